"""The whole analysis path on the tiny random-weight Qwen2.5-VL checkpoint: queue →
worker (loads the model on first use) → streamed deltas → stored analysis."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ophthai_desktop.bootstrap import Application, build_application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.inference import ModelState
from ophthai_desktop.core.records import Actor, JobRecord
from ophthai_desktop.core.services.patients import NewImage
from tests.conftest import make_settings
from tests.support.forced_output import force_output
from tests.support.images import clinic_image_files, png_bytes
from tests.support.jobs import wait_for_outcome


@pytest.fixture
def tiny_app(tmp_path: Path, tiny_checkpoint: Path) -> Iterator[Application]:
    application = build_application(
        make_settings(tmp_path, model_path=tiny_checkpoint, max_new_tokens=12, device="cpu")
    )
    application.start_worker()
    yield application
    application.close()


def test_queued_analysis_completes_with_the_tiny_model(tiny_app: Application) -> None:
    seen: list[ev.Event] = []
    tiny_app.bus.subscribe(seen.append)
    actor = Actor("tester", "gui")
    assert tiny_app.engine.status().state is ModelState.INSTALLED
    patient = tiny_app.patients.create_patient(
        {"name": "Tiny"}, actor=actor, image=NewImage(png_bytes((64, 48)), modality="OCT")
    )
    job = tiny_app.jobs.queue_patient_analysis(patient.id, actor=actor)
    outcome = wait_for_outcome(tiny_app, job.id)
    assert outcome.job.state == "done", outcome.job.error
    analysis = outcome.analysis
    assert analysis is not None
    # Random weights write no valid JSON: stored as a parse failure, never made up.
    assert analysis.parse_status == "parse_failed" and analysis.result is None
    assert analysis.completion_tokens == 12
    assert analysis.device == "cpu" and analysis.prompt_version
    # OPHTHAI_MODEL_PATH: the folder's contents name what ran (not a Hub commit).
    assert analysis.model_id == str(tiny_app.settings.model_path)
    assert analysis.model_revision == tiny_app.engine.status().revision
    assert analysis.model_revision is not None and analysis.model_revision.startswith("sha256:")
    assert tiny_app.engine.status().state is ModelState.READY  # loaded on first use
    progress = [e for e in seen if isinstance(e, ev.AnalysisProgressed) and e.job_id == job.id]
    assert len(progress) > 1  # streamed piece by piece while generating
    streamed = {
        phase: "".join(e.delta for e in progress if e.phase == phase).strip()
        for phase in ("reasoning", "answer")
    }
    assert streamed == {"reasoning": analysis.reasoning_text, "answer": analysis.answer_text}
    states = [e.state for e in seen if isinstance(e, ev.ModelStateChanged)]
    assert states[0] == "loading" and states[-1] == "ready"
    assert tiny_app.patients.get_patient(patient.id).workflow_step == 2


def test_every_kind_of_clinic_image_is_analysed(tiny_app: Application) -> None:
    actor = Actor("tester", "gui")
    jobs = {}
    for name, data in clinic_image_files().items():
        patient = tiny_app.patients.create_patient(
            {"name": "Tiny"}, actor=actor, image=NewImage(data, modality="OCT")
        )
        jobs[name] = tiny_app.jobs.queue_patient_analysis(patient.id, actor=actor).id

    outcomes = {name: wait_for_outcome(tiny_app, job_id).job for name, job_id in jobs.items()}

    assert {name: (job.state, job.error) for name, job in outcomes.items()} == {
        name: ("done", None) for name in jobs
    }


def test_a_model_file_removed_between_loads_is_named_and_the_queue_runs_once_fixed(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """The model worked, was unloaded, and lost its tokenizer on disk: the queue says
    which file is missing (not only "not installed"), and runs once it is back."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_checkpoint, folder)
    app = build_application(
        make_settings(tmp_path / "data", model_path=folder, max_new_tokens=4, device="cpu")
    )
    app.start_worker()
    try:
        first = _queue_an_analysis(app, "Tiny")
        assert wait_for_outcome(app, first.id).job.state == "done"
        app.worker.request_unload()
        tokenizer = (folder / "tokenizer.json").read_bytes()
        (folder / "tokenizer.json").unlink()

        job = app.jobs.queue_patient_analysis(
            first.patient_id, actor=Actor("tester", "gui"), question="again"
        )
        deadline = time.monotonic() + 30
        while "tokenizer.json" not in (app.worker.waiting_reason or ""):
            assert time.monotonic() < deadline, app.worker.waiting_reason
            time.sleep(0.02)
        assert "stay queued" in (app.worker.waiting_reason or "")
        assert app.jobs.get_job(job.id).state == "queued"

        (folder / "tokenizer.json").write_bytes(tokenizer)
        app.worker.request_load()  # AI ▸ Check model files again
        outcome = wait_for_outcome(app, job.id)
        assert outcome.job.state == "done", outcome.job.error
        assert app.worker.waiting_reason is None
    finally:
        app.close()


def test_jobs_waiting_for_a_model_not_installed_say_what_to_do_once(tmp_path: Path) -> None:
    """What a job's `waiting` (and `/api/ai/health`'s `worker_waiting`) says while the
    model is not installed: which folder is missing, then the advice, said once."""
    folder = tmp_path / "not-there"
    app = build_application(make_settings(tmp_path / "data", model_path=folder))
    app.start_worker()
    try:
        job = _queue_an_analysis(app, "Waits")
        reason = _waiting_reason(app)
        assert reason.startswith(
            f"the model is not installed. OPHTHAI_MODEL_PATH is {folder}, but that folder "
            "does not exist. Queued analyses stay queued"
        )
        assert reason.count("ophthai download-model") == 1  # the way without a window
        assert reason.count("OPHTHAI_MODEL_PATH") == 2  # the setting named, then the advice
        assert app.jobs.get_job(job.id).state == "queued"
    finally:
        app.close()


def _queue_an_analysis(app: Application, name: str) -> JobRecord:
    """A new patient with an OCT scan, and its analysis queued."""
    actor = Actor("tester", "gui")
    patient = app.patients.create_patient(
        {"name": name}, actor=actor, image=NewImage(png_bytes((64, 48)), modality="OCT")
    )
    return app.jobs.queue_patient_analysis(patient.id, actor=actor)


def _waiting_reason(app: Application) -> str:
    """What the queue says while the model is not usable, once the worker has looked."""
    deadline = time.monotonic() + 30
    while app.worker.waiting_reason is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return app.worker.waiting_reason


def _reason_an_analysis_waits(tmp_path: Path, model_path: Path | None) -> str:
    """What the queue says of an analysis queued on a new app whose model is at
    ``model_path`` (None: the Hub cache's), once the worker has looked."""
    app = build_application(make_settings(tmp_path / "data", model_path=model_path))
    app.start_worker()
    try:
        _queue_an_analysis(app, "Waits")
        return _waiting_reason(app)
    finally:
        app.close()


@pytest.mark.parametrize("where", ["hub cache", "empty folder", "relative folder"])
def test_jobs_waiting_for_a_model_not_installed_say_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The worker's heading, then the engine's fault, said it twice: "the model is not
    installed. The model is not installed: F holds none of its files." (or
    "OctoMed/OctoMed-7B is not installed: it is not in the Hugging Face cache"). A
    relative folder (OPHTHAI_MODEL_PATH=empty) is named as set: said once, it was given
    a capital ("Empty holds none..."), a folder that is not there where case counts."""
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "empty"
    folder.mkdir()
    model_path = {"empty folder": folder, "relative folder": Path("empty")}.get(where)

    reason = _reason_an_analysis_waits(tmp_path, model_path)

    assert reason.startswith(
        f"the model is not installed. {model_path} holds none of its files. Queued analyses"
        if model_path
        else "the model is not installed. OctoMed/OctoMed-7B: it is not in the Hugging "
        f"Face cache ({cache}). Queued analyses"
    )
    assert reason.count("not installed") == 1


@pytest.mark.parametrize("where", ["model path", "hub cache"])
def test_a_folder_name_with_a_full_stop_is_named_whole_while_jobs_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A home folder such as "J. Smith": the queue's reason named the folder up to
    "J." and dropped the rest, as if the sentence ended there."""
    home = tmp_path / "Users" / "J. Smith"
    monkeypatch.setenv("HF_HUB_CACHE", str(home / ".cache" / "huggingface" / "hub"))
    model_path = home / "models" / "octomed" if where == "model path" else None

    reason = _reason_an_analysis_waits(tmp_path, model_path)

    missing = model_path or home / ".cache" / "huggingface" / "hub"
    assert f"{missing}" in reason
    assert reason.startswith("the model is not installed.")
    assert reason.count("Queued analyses stay queued") == 1


def test_damaged_files_in_a_folder_with_a_full_stop_are_named_while_jobs_wait(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """The damaged model's files were not named when its folder's path had "Dr." in it."""
    folder = shutil.copytree(tiny_checkpoint, tmp_path / "Dr. J. Smith" / "model")
    (folder / "model-00002-of-00002.safetensors").unlink()

    reason = _reason_an_analysis_waits(tmp_path, folder)

    assert reason.startswith(
        f"the model's files are damaged. The model in {folder}: "
        "model-00002-of-00002.safetensors is missing"
    )
    assert "is damaged" not in reason  # the engine's "F is damaged:" said it again
    assert reason.count("ophthai download-model") == 1


#: The model's answer, then the same answer again as "Normal".
CONFLICTING_OUTPUT = (
    "<think>Cystoid spaces in the inner nuclear layer.</think>"
    '{"classification": "Diabetic Macular Edema", "confidence": 85, "findings": ["cysts"]}\n'
    'Final answer: {"classification": "Normal", "confidence": 85, "findings": []}'
)


#: The model's answer, then more thinking and another answer: only the text after the
#: last </think> was read, and the first answer was filed away as reasoning.
THOUGHT_AGAIN_OUTPUT = (
    "<think>Cystoid spaces in the inner nuclear layer.</think>"
    '{"classification": "Diabetic Macular Edema", "confidence": 85, "findings": ["cysts"]}'
    "<think>On reflection the foveal contour is normal.</think>"
    '{"classification": "Normal", "confidence": 85, "findings": []}'
)


@pytest.mark.parametrize("output", [CONFLICTING_OUTPUT, THOUGHT_AGAIN_OUTPUT])
def test_an_answer_giving_two_classifications_is_a_parse_failure_naming_both(
    tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    """The model's text, streamed and parsed by the real engine and stored by the worker:
    not filed as Normal (patient marked stable, no alarm) but as a parse failure that
    names both diagnoses, with the raw answer (both of them) for the clinician to read,
    and the critical alarm for the one that is a finding."""
    force_output(monkeypatch, tiny_checkpoint, output)
    app = build_application(
        make_settings(tmp_path, model_path=tiny_checkpoint, max_new_tokens=400, device="cpu")
    )
    app.start_worker()
    try:
        job = _queue_an_analysis(app, "Tiny")
        outcome = wait_for_outcome(app, job.id)

        assert outcome.job.state == "done", outcome.job.error
        analysis = outcome.analysis
        assert analysis is not None
        assert analysis.generation_settings["finish_reason"] == "eos"
        assert (analysis.parse_status, analysis.result) == ("parse_failed", None)
        assert analysis.parse_error == (
            "The answer gives two different classifications: Diabetic Macular Edema and "
            "Normal. Read the model's answer."
        )
        assert analysis.answer_text == output.split("</think>", 1)[1]
        assert analysis.reasoning_text.startswith("Cystoid spaces")
        # One of them is a finding: the alarm goes off as for a preliminary one.
        stored = app.patients.get_patient(job.patient_id)
        assert (stored.status, stored.workflow_step) == ("Critical", 2)
        notes = app.notifications.list_notifications(patient_id=job.patient_id).items
        assert [n.type for n in notes] == ["critical"]
        assert notes[0].message.startswith(
            "Possible abnormal finding for patient Tiny: Diabetic Macular Edema - the answer "
            "could not be read: The answer gives two different classifications"
        )
    finally:
        app.close()


def test_a_queue_waiting_on_a_device_setting_is_not_told_to_fix_the_files(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """OPHTHAI_DEVICE=cuda on a machine without a GPU: the files are whole, yet the
    queue's reason told the clinician to "fix or replace its files"."""
    app = build_application(
        make_settings(tmp_path / "data", model_path=tiny_checkpoint, device="cuda")
    )
    app.start_worker()
    try:
        job = _queue_an_analysis(app, "Tiny")
        deadline = time.monotonic() + 60
        while "CUDA" not in (app.worker.waiting_reason or ""):
            assert time.monotonic() < deadline, app.worker.waiting_reason
            time.sleep(0.02)
        reason = app.worker.waiting_reason or ""
        assert "Use OPHTHAI_DEVICE=auto or cpu" in reason  # the engine's advice
        assert "replace its files" not in reason
        assert "stay queued" in reason and "check" in reason
        assert app.jobs.get_job(job.id).state == "queued"
    finally:
        app.close()
