"""The whole analysis path on the tiny model trained to answer one fixed result: queue →
worker → streamed deltas → stored, parsed analysis → critical patient and alarm."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ophthai_desktop.bootstrap import Application, build_application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.inference.prompt import PROMPT_VERSION
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from tests.conftest import make_settings
from tests.support.images import png_bytes
from tests.support.jobs import wait_for_outcome
from tests.support.tiny_checkpoint import TRAINED_ANSWER, TRAINED_MAX_PIXELS, TRAINED_REASONING
from tests.support.watch_folder import wait_until


@pytest.fixture
def trained_app(tmp_path: Path, trained_checkpoint: Path) -> Iterator[Application]:
    application = build_application(
        make_settings(
            tmp_path,
            model_path=trained_checkpoint,
            max_pixels=TRAINED_MAX_PIXELS,
            max_new_tokens=200,
            device="cpu",
        )
    )
    application.start_worker()
    yield application
    application.close()


def test_trained_model_result_is_stored_and_raises_the_alarm(trained_app: Application) -> None:
    seen: list[ev.Event] = []
    trained_app.bus.subscribe(seen.append)
    actor = Actor("tester", "gui")
    patient = trained_app.patients.create_patient(
        {"name": "Trained"}, actor=actor, image=NewImage(png_bytes((96, 72)), modality="OCT")
    )
    job = trained_app.jobs.queue_patient_analysis(patient.id, actor=actor)
    outcome = wait_for_outcome(trained_app, job.id, timeout_s=60)
    assert outcome.job.state == "done", outcome.job.error
    # Its events follow the commit that made it done; the alarm is the last of them.
    assert wait_until(lambda: any(isinstance(e, ev.AbnormalScanDetected) for e in seen))
    analysis = outcome.analysis
    assert analysis is not None
    assert analysis.parse_status == "parsed", analysis.parse_error
    assert analysis.result == TRAINED_ANSWER
    assert analysis.reasoning_text == TRAINED_REASONING
    # OPHTHAI_MODEL_PATH: the folder is what ran, not the configured Hub id.
    assert analysis.model_id == str(trained_app.settings.model_path)
    assert analysis.model_revision is not None and analysis.model_revision.startswith("sha256:")
    assert analysis.prompt_version == PROMPT_VERSION
    assert analysis.device == "cpu"
    assert analysis.generation_settings["finish_reason"] == "eos"
    assert analysis.prompt_tokens and analysis.prompt_tokens > 0
    assert analysis.completion_tokens and 0 < analysis.completion_tokens < 200
    assert analysis.time_to_first_token_s is not None and analysis.time_to_first_token_s > 0

    stored = trained_app.patients.get_patient(patient.id)
    assert stored.status == "Critical" and stored.workflow_step == 2
    notes = trained_app.notifications.list_notifications(patient_id=patient.id).items
    critical = [n for n in notes if n.type == "critical"]
    assert len(critical) == 1 and "Diabetic Macular Edema" in critical[0].message

    mine = [
        e
        for e in seen
        if getattr(e, "job_id", None) == job.id or isinstance(e, ev.AbnormalScanDetected)
    ]
    kinds = [type(e) for e in mine]
    finished = kinds.index(ev.AnalysisFinished)
    progress = [e for e in mine[:finished] if isinstance(e, ev.AnalysisProgressed)]
    assert progress, "no delta arrived before the analysis finished"
    assert ev.AnalysisProgressed not in kinds[finished:]
    reasoning = "".join(e.delta for e in progress if e.phase == "reasoning")
    answer = "".join(e.delta for e in progress if e.phase == "answer")
    assert reasoning.strip() == analysis.reasoning_text
    assert answer.strip() == analysis.answer_text
    alarms = [e for e in mine if isinstance(e, ev.AbnormalScanDetected)]
    assert len(alarms) == 1 and kinds.index(ev.AbnormalScanDetected) > finished
    assert alarms[0].label == "Diabetic Macular Edema" and alarms[0].confidence == 87
    assert alarms[0].notification.id == critical[0].id
