"""The persistent queue and the worker loop, with a scripted engine.

The engine here stands in for the model so that the queue, the worker, the stored
provenance and the abnormal-finding alarm can be checked with chosen outputs; the real
engine on the tiny checkpoint is exercised in ``tests/core/inference`` and
``test_worker_tiny_model.py``.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.domain import JobPriority
from ophthai_desktop.core.errors import (
    Conflict,
    DatabaseUnavailable,
    InvalidInput,
    ModelUnavailable,
    NotFound,
)
from ophthai_desktop.core.inference import InferenceEngine, ModelState
from ophthai_desktop.core.inference.parsing import ParsedAnswer
from ophthai_desktop.core.inference.preprocess import prepare_image
from ophthai_desktop.core.records import Actor, JobRecord
from ophthai_desktop.core.services.ingest import FolderLayout
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.worker import LOAD_STOP_WAIT_S, InferenceWorker
from tests.support.images import png_bytes
from tests.support.outage import database_down
from tests.support.races import meanwhile
from tests.support.scripted_engine import DME, NORMAL, ScriptedEngine


def _events(app: Application) -> list[ev.Event]:
    seen: list[ev.Event] = []
    app.bus.subscribe(seen.append)
    return seen


@pytest.fixture
def running(sqlite_services: Application) -> Iterator[Callable[[ScriptedEngine], InferenceWorker]]:
    workers: list[InferenceWorker] = []

    def start(engine: ScriptedEngine) -> InferenceWorker:
        worker = InferenceWorker(engine, sqlite_services.jobs, sqlite_services.bus)
        worker.start()
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def _wait(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _wait_alarm(seen: list[ev.Event]) -> None:
    """Wait for the ``abnormal_scan`` event, the last a finished analysis publishes:
    its job reads done from the commit, a moment before its events are published."""
    _wait(lambda: any(isinstance(e, ev.AbnormalScanDetected) for e in seen))


def _patient_with_scan(app: Application, actor: Actor) -> str:
    return app.patients.create_patient(
        {"name": "Queue Patient"}, actor=actor, image=NewImage(png_bytes((40, 30)))
    ).id


def test_abnormal_result_is_stored_with_provenance_and_alarms(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    seen = _events(app)
    patient_id = _patient_with_scan(app, actor)
    running(ScriptedEngine(DME))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    _wait_alarm(seen)

    outcome = app.jobs.outcome(job.id)
    analysis = outcome.analysis
    assert analysis is not None
    assert analysis.result == DME.to_dict()
    assert (analysis.status, analysis.parse_status) == ("preliminary", "parsed")
    assert (analysis.model_id, analysis.model_revision, analysis.prompt_version) == (
        "scripted",
        "abc123",
        "test-v1",
    )
    assert analysis.reasoning_text == "Looking at the fovea."
    assert analysis.image_sha256 == outcome.job.image_sha256
    assert analysis.queue_wait_s is not None and analysis.queue_wait_s >= 0
    assert analysis.completion_tokens == 5

    patient = app.patients.get_patient(patient_id)
    assert patient.workflow_step == 2 and patient.status == "Critical"
    assert patient.latest_analysis == analysis
    critical = app.notifications.list_notifications().items
    assert [n.type for n in critical] == ["critical"]
    assert "Diabetic Macular Edema" in critical[0].message

    names = [e.name for e in seen]
    for expected in (
        "analysis_queued",
        "analysis_started",
        "analysis_progress",
        "analysis_finished",
        "notification",
        "abnormal_scan",
    ):
        assert expected in names, expected
    progress = [e for e in seen if isinstance(e, ev.AnalysisProgressed)]
    assert "".join(p.delta for p in progress if p.phase == "reasoning") == "Looking at the fovea."
    abnormal = next(e for e in seen if isinstance(e, ev.AbnormalScanDetected))
    assert abnormal.label == "Diabetic Macular Edema" and abnormal.confidence == 87.0


def test_normal_result_raises_no_alarm(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    running(ScriptedEngine(NORMAL))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    assert app.notifications.list_notifications().total == 0
    assert app.patients.get_patient(patient_id).status == "Stable"


def test_completion_tokens_of_finished_jobs(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    finished = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    worker = running(ScriptedEngine(NORMAL))
    _wait(lambda: app.jobs.get_job(finished.id).state == "done")
    worker.stop()  # the next job stays queued
    waiting = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)

    counts = app.jobs.completion_tokens_of([finished.id, waiting.id, 99_999])
    assert counts == {finished.id: 5}  # the scripted engine's count; none for the others
    assert app.jobs.completion_tokens_of([]) == {}


def test_an_ungradable_image_raises_no_alarm_and_asks_for_another_scan(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    """The prompt tells the model to answer "Ungradable" for an image it cannot read:
    that is no abnormal finding (no critical alarm, the patient not made Critical) and
    no normal result either; the clinician is told to take the scan again."""
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    ungradable = ParsedAnswer(
        classification="Ungradable", confidence=90.0, explanation="Heavy media opacity."
    )
    seen = _events(app)
    running(ScriptedEngine(ungradable))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    # Its notification, the last event it publishes: no alarm came before it.
    _wait(lambda: any(isinstance(e, ev.NotificationCreated) for e in seen))

    patient = app.patients.get_patient(patient_id)
    assert (patient.status, patient.workflow_step) == ("Pending Analysis", 2)
    assert not [e for e in seen if isinstance(e, ev.AbnormalScanDetected)]
    notes = app.notifications.list_notifications().items
    assert [(n.type, n.message) for n in notes] == [
        (
            "info",
            "The image for patient Queue Patient could not be graded (Ungradable): Heavy "
            "media opacity. Take the scan again or analyse another image.",
        )
    ]
    analysis = app.jobs.outcome(job.id).analysis
    assert analysis is not None and analysis.result is not None
    assert analysis.result["classification"] == "Ungradable"


def test_unparseable_answer_is_stored_as_such(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    running(ScriptedEngine(None))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    analysis = app.jobs.outcome(job.id).analysis
    assert analysis is not None
    assert analysis.result is None
    assert analysis.parse_status == "parse_failed"
    assert analysis.parse_error == "no JSON object in the answer"
    assert analysis.answer_text == '{"classification": "x"}'
    assert app.patients.get_patient(patient_id).status == "Pending Analysis"
    # Not read by the app: the clinician is told to read it (no alarm: nothing found).
    notes = app.notifications.list_notifications(patient_id=patient_id).items
    assert [(n.type, n.message) for n in notes] == [
        (
            "info",
            "The analysis for patient Queue Patient could not be read: no JSON object in the "
            "answer. Read the model's answer before validating.",
        )
    ]


CONFLICT = (
    "The answer gives two different classifications: Diabetic Macular Edema and Normal. "
    "Read the model's answer."
)


def test_the_alarm_gives_the_confidence_as_the_result_card_does(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    """A confidence of 72.5 % (a fraction of 0.725 read) is not announced as 72 %."""
    app = sqlite_services
    seen = _events(app)
    patient_id = _patient_with_scan(app, actor)
    running(ScriptedEngine(replace(DME, confidence=72.5)))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    _wait_alarm(seen)

    [note] = app.notifications.list_notifications().items
    assert note.message == (
        "Abnormal finding for patient Queue Patient: Diabetic Macular Edema (72.5% "
        "confidence) - preliminary, needs validation"
    )
    [alarm] = [e for e in seen if isinstance(e, ev.AbnormalScanDetected)]
    assert (alarm.confidence, alarm.probabilities) == (72.5, {DME.classification: 0.725})


def test_an_unreadable_answer_naming_an_abnormal_diagnosis_raises_the_alarm(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    """ "DME" then "Normal": no result is taken, but one of the answers is a finding. As
    for a preliminary abnormal result, a critical notification (marked as unreadable,
    with no confidence), ``abnormal_scan`` and the patient made Critical; it was an
    info notification, and a patient listed Stable from an earlier normal result stayed
    so."""
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    app.patients.update_patient(patient_id, {"status": "Stable"}, actor=actor)
    seen = _events(app)
    running(ScriptedEngine(None, named=("Diabetic Macular Edema", "Normal"), parse_error=CONFLICT))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    _wait_alarm(seen)

    analysis = app.jobs.outcome(job.id).analysis
    assert analysis is not None and analysis.result is None  # still nothing made up
    assert (analysis.parse_status, analysis.parse_error) == ("parse_failed", CONFLICT)
    patient = app.patients.get_patient(patient_id)
    assert (patient.status, patient.workflow_step) == ("Critical", 2)
    notes = app.notifications.list_notifications(patient_id=patient_id).items
    message = (
        "Possible abnormal finding for patient Queue Patient: Diabetic Macular Edema - the "
        "answer could not be read: The answer gives two different classifications: "
        "Diabetic Macular Edema and Normal. Read the model's answer before validating."
    )
    assert [(n.type, n.message) for n in notes] == [("critical", message)]
    alarms = [e for e in seen if isinstance(e, ev.AbnormalScanDetected)]
    assert [(a.label, a.confidence, a.probabilities) for a in alarms] == [
        ("Diabetic Macular Edema", None, {})
    ]
    assert alarms[0].notification == notes[0]


@pytest.mark.parametrize("named", [(), ("Normal",), ("Ungradable",), ("Normal", "No DR")], ids=str)
def test_an_unreadable_answer_naming_no_finding_is_an_info_notification(
    sqlite_services: Application, actor: Actor, running: Any, named: tuple[str, ...]
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    seen = _events(app)
    running(ScriptedEngine(None, named=named))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    # Its notification, the last event it publishes: no alarm came before it.
    _wait(lambda: any(isinstance(e, ev.NotificationCreated) for e in seen))

    assert app.patients.get_patient(patient_id).status == "Pending Analysis"
    notes = app.notifications.list_notifications(patient_id=patient_id).items
    assert [n.type for n in notes] == ["info"]
    assert not [e for e in seen if isinstance(e, ev.AbnormalScanDetected)]


def test_failing_job_does_not_kill_the_worker(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    engine = ScriptedEngine(NORMAL, fail_with=RuntimeError("CUDA error: device-side assert"))
    worker = running(engine)
    bad = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(bad.id).state == "failed")
    assert "CUDA error" in (app.jobs.get_job(bad.id).error or "")
    engine.fail_with = None
    good = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(good.id).state == "done")
    assert worker.alive


def test_a_failed_analysis_raises_a_notification_naming_the_patient_and_why(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    """A watch-folder scan whose analysis fails overnight is told, as one that finishes
    is: not only a row in the queue that nobody looks at."""
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    seen = _events(app)
    running(ScriptedEngine(NORMAL, fail_with=RuntimeError("CUDA out of memory")))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: any(isinstance(e, ev.NotificationCreated) for e in seen))

    notes = app.notifications.list_notifications(patient_id=patient_id).items
    assert [(n.type, n.message, n.read) for n in notes] == [
        (
            "info",
            f"The analysis for patient Queue Patient failed (job #{job.id}): "
            "unexpected error: RuntimeError: CUDA out of memory.",
            False,
        )
    ]
    assert notes[0].job_id == job.id  # named by its job, not only in its words
    # After the job's end, which it tells of: a client reads the job failed.
    ended = [i for i, e in enumerate(seen) if isinstance(e, ev.AnalysisFailed)]
    told = [i for i, e in enumerate(seen) if isinstance(e, ev.NotificationCreated)]
    assert len(ended) == 1 and told == [ended[0] + 1]
    assert seen[told[0]].notification == notes[0]  # type: ignore[attr-defined]
    assert app.patients.get_patient(patient_id).status == "Pending Analysis"


def test_a_later_result_of_the_scan_marks_its_failure_read_and_says_so(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    """ "The analysis for patient … failed" stayed unread after the scan was analysed
    again and the result stored: an alarm no longer true. Only that scan's failures are
    answered: another scan's, and a person's notes, stay unread, even one in a failure's
    words (it was marked read as the failure it quoted)."""
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    first = app.patients.list_scans(patient_id)[0]
    other = app.patients.attach_image(patient_id, NewImage(png_bytes((30, 40))), actor=actor)
    engine = ScriptedEngine(NORMAL, fail_with=RuntimeError("CUDA out of memory"))
    running(engine)
    failed = app.jobs.queue_patient_analysis(patient_id, actor=actor, scan_id=first.id)
    _wait(lambda: app.jobs.get_job(failed.id).state == "failed")
    failed_other = app.jobs.queue_patient_analysis(patient_id, actor=actor, scan_id=other.id)
    _wait(lambda: app.jobs.get_job(failed_other.id).state == "failed")
    app.notifications.create_notification("Call the patient", patient_id=patient_id, actor=actor)
    quoted = f"The analysis for patient Queue Patient failed (job #{failed.id}): see me"
    app.notifications.create_notification(quoted, patient_id=patient_id, actor=actor)
    _wait(lambda: app.notifications.unread_count() == 4)
    seen = _events(app)
    engine.fail_with = None
    good = app.jobs.queue_patient_analysis(patient_id, actor=actor, scan_id=first.id)
    _wait(lambda: app.jobs.get_job(good.id).state == "done")

    notes = app.notifications.list_notifications(patient_id=patient_id).items
    unread = {n.message.split(": ")[0] for n in notes if not n.read and n.message != quoted}
    assert unread == {
        "Call the patient",
        f"The analysis for patient Queue Patient failed (job #{failed_other.id})",
    }
    assert [n.read for n in notes if n.message == quoted] == [False]
    assert app.notifications.unread_count() == 3
    (answered,) = [n for n in notes if f"(job #{failed.id})" in n.message and n.job_id]
    assert answered.read
    # Told as any read change is (the badge, the WebSocket's notification_updated).
    _wait(lambda: any(isinstance(e, ev.NotificationUpdated) for e in seen))
    updated = [e.notification for e in seen if isinstance(e, ev.NotificationUpdated)]
    assert updated == [answered]


def test_a_failure_stored_again_is_told_once(app_services: Application, actor: Actor) -> None:
    """The worker stores a job's failure again where the database's answer to the first
    commit was lost (an outage): one notification, not two."""
    app = app_services
    patient_id = _patient_with_scan(app, actor)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    seen = _events(app)
    app.jobs.fail(job.id, "The scan's stored image file is missing.")
    app.jobs.fail(job.id, "The scan's stored image file is missing.")
    notes = app.notifications.list_notifications(patient_id=patient_id).items
    assert len(notes) == 1 and f"(job #{job.id})" in notes[0].message
    # Nor a second alert: a call that is no try again finds it told already.
    assert [e.job_id for e in seen if isinstance(e, ev.AnalysisFailed)] == [job.id]


def test_a_failure_whose_commit_answer_is_lost_is_announced_once_with_its_notification(
    sqlite_services: Application, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first commit stores the failure and its notification, but its answer is
    lost: the worker's try again found them stored and announced ``analysis_failed``
    without the ``notification`` (the panel and WebSocket clients never saw it)."""
    app = sqlite_services
    seen = _events(app)
    patient_id = _patient_with_scan(app, actor)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    claimed = app.jobs.claim_next()
    assert claimed is not None and claimed.id == job.id
    lost: list[int] = []
    opening = app.db.session

    @contextlib.contextmanager
    def answer_lost_once() -> Iterator[Session]:
        added: list[object] = []
        with opening() as opened:
            event.listen(opened, "before_flush", lambda s, *_: added.extend(s.new))
            yield opened
        stores = any(isinstance(row, m.Notification) for row in added)
        if stores and not lost:  # committed, but the worker is told it failed
            lost.append(1)
            raise DatabaseUnavailable()

    monkeypatch.setattr(app.db, "session", answer_lost_once)
    engine = ScriptedEngine(NORMAL, fail_with=RuntimeError("CUDA out of memory"))
    InferenceWorker(engine, app.jobs, app.bus)._run_job(claimed)
    monkeypatch.undo()

    assert lost and app.jobs.get_job(job.id).state == "failed"
    (note,) = app.notifications.list_notifications(patient_id=patient_id).items
    assert [e.job_id for e in seen if isinstance(e, ev.AnalysisFailed)] == [job.id]  # once
    assert [e.notification for e in seen if isinstance(e, ev.NotificationCreated)] == [note]


def test_a_cancelled_analysis_or_one_of_no_patient_raises_no_notification(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    hold = threading.Event()
    engine = ScriptedEngine(NORMAL, hold=hold)
    worker = running(engine)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: worker.current_job_id == job.id)
    app.jobs.request_cancel(job.id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "cancelled")
    engine.fail_with = RuntimeError("CUDA out of memory")
    hold.set()
    lone = app.jobs.queue_image_analysis(png_bytes((40, 30)), actor=actor)
    _wait(lambda: app.jobs.get_job(lone.id).state == "failed")
    assert app.notifications.list_notifications().items == ()


@contextlib.contextmanager
def _read_only(app: Application) -> Iterator[None]:
    """The database refuses every write meanwhile (SQLite's ``query_only``; as root, a
    read-only file would still be written), as one that is read-only, locked or whose
    server is restarting does: each write is an OperationalError."""

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA query_only=ON")

    event.listen(app.db.engine, "connect", on_connect)
    app.db.dispose()  # pooled connections were opened writable
    try:
        yield
    finally:
        event.remove(app.db.engine, "connect", on_connect)
        app.db.dispose()


def test_an_analysis_finished_while_the_database_refuses_writes_is_stored_once_it_answers(
    sqlite_services: Application, actor: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    app = sqlite_services
    hold = threading.Event()
    worker = InferenceWorker(ScriptedEngine(DME, hold=hold), app.jobs, app.bus)
    worker.start()
    try:
        job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
        _wait(lambda: worker.current_job_id == job.id)
        with caplog.at_level(logging.WARNING), _read_only(app):
            hold.set()  # the model's answer arrives while nothing can be written
            _wait(lambda: "stored once the database answers" in caplog.text)
            assert app.jobs.get_job(job.id).state == "running"  # not failed for it
        _wait(lambda: app.jobs.get_job(job.id).state == "done")
        analysis = app.jobs.outcome(job.id).analysis
        assert analysis is not None and analysis.result is not None
        assert analysis.result["classification"] == DME.classification
        # The worker goes on with the next analysis.
        second = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
        _wait(lambda: app.jobs.get_job(second.id).state == "done")
    finally:
        worker.stop()


def test_an_analysis_whose_commit_answer_is_lost_is_stored_once(
    sqlite_services: Application, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database commits the analysis but the answer to the COMMIT is lost (a
    PostgreSQL server restarting as it commits): the worker's retry must not store it a
    second time, with a second alarm for the one finding."""
    app = sqlite_services
    seen = _events(app)
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    claimed = app.jobs.claim_next()
    assert claimed is not None and claimed.id == job.id
    lost = _run_with_the_commit_s_answer_lost_once(app, claimed, monkeypatch)
    assert lost
    assert app.jobs.get_job(job.id).state == "done"
    with app.db.session() as session:
        stored = session.scalars(select(m.Analysis).where(m.Analysis.job_id == job.id)).all()
    assert len(stored) == 1
    alarms = app.notifications.list_notifications()
    assert alarms.total == 1  # one alarm
    assert [e.job_id for e in seen if isinstance(e, ev.AnalysisFinished)] == [job.id]
    # Announced all the same, as the first commit would have: the window and WebSocket
    # clients see the critical alert without a reload.
    (alarm,) = alarms.items
    assert [e.notification.id for e in seen if isinstance(e, ev.NotificationCreated)] == [alarm.id]
    (abnormal,) = [e for e in seen if isinstance(e, ev.AbnormalScanDetected)]
    assert (abnormal.notification.id, abnormal.label) == (alarm.id, DME.classification)
    assert abnormal.confidence == DME.confidence


def _run_with_the_commit_s_answer_lost_once(
    app: Application,
    claimed: Any,
    monkeypatch: pytest.MonkeyPatch,
    meanwhile: Callable[[], object] | None = None,
) -> list[int]:
    """Run ``claimed``; the first commit that stores its analysis goes through, but the
    worker is told it failed (``meanwhile`` runs between the two). One entry per loss."""
    lost: list[int] = []
    opening = app.db.session

    @contextlib.contextmanager
    def answer_lost_once() -> Iterator[Session]:
        with opening() as opened:
            yield opened
            stores = any(isinstance(row, m.Analysis) for row in opened.identity_map.values())
        if stores and not lost:  # committed, but the worker is told it failed
            lost.append(1)
            if meanwhile is not None:
                meanwhile()
            raise DatabaseUnavailable()

    monkeypatch.setattr(app.db, "session", answer_lost_once)
    InferenceWorker(ScriptedEngine(DME), app.jobs, app.bus)._run_job(claimed)
    monkeypatch.undo()
    return lost


def test_a_retried_analysis_announces_its_alarm_even_if_the_patient_was_renamed_meanwhile(
    sqlite_services: Application, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alarm's text names the patient: renamed between the commit whose answer was
    lost and the try again, the alarm that commit stored is announced all the same."""
    app = sqlite_services
    seen = _events(app)
    patient_id = _patient_with_scan(app, actor)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    claimed = app.jobs.claim_next()
    assert claimed is not None and claimed.id == job.id

    def rename() -> None:
        app.patients.update_patient(patient_id, {"name": "Renamed Patient"}, actor=actor)

    lost = _run_with_the_commit_s_answer_lost_once(app, claimed, monkeypatch, meanwhile=rename)
    assert lost and app.jobs.get_job(job.id).state == "done"
    (alarm,) = app.notifications.list_notifications().items
    assert "Queue Patient" in alarm.message  # as stored, before the rename
    assert [e.notification.id for e in seen if isinstance(e, ev.NotificationCreated)] == [alarm.id]
    (abnormal,) = [e for e in seen if isinstance(e, ev.AbnormalScanDetected)]
    assert abnormal.notification == alarm


def test_an_analysis_the_database_fails_before_it_runs_is_queued_again_not_failed(
    sqlite_services: Application, actor: Actor
) -> None:
    app = sqlite_services
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    claimed = app.jobs.claim_next()
    assert claimed is not None and claimed.id == job.id
    # Between the claim and the start, the database does not answer once (the file
    # gone, the server restarting).
    with database_down(app.db, times=1) as refused:
        InferenceWorker(ScriptedEngine(DME), app.jobs, app.bus)._run_job(claimed)
    assert refused
    again = app.jobs.get_job(job.id)
    assert again.state == "queued" and again.error is None  # it runs later, not failed


def test_a_missing_image_found_during_an_outage_still_fails_the_job(
    sqlite_services: Application, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker reads whether the job is still there (or went with its patient) as
    the database stops answering: the job still ends, failed for its missing image,
    rather than the outage escaping and leaving it running until the next start."""
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    app.images.path_for(app.patients.list_scans(patient_id)[0].sha256).unlink()
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    claimed = app.jobs.claim_next()
    assert claimed is not None and claimed.id == job.id
    reading = app.jobs.image_bytes
    refusals: list[list[int]] = []

    with contextlib.ExitStack() as outage:

        def image_bytes(record: Any) -> bytes:
            try:
                return reading(record)  # NotFound: the file is gone
            finally:  # and the database stops answering for a moment
                refusals.append(outage.enter_context(database_down(app.db, times=1)))

        monkeypatch.setattr(app.jobs, "image_bytes", image_bytes)
        InferenceWorker(ScriptedEngine(DME), app.jobs, app.bus)._run_job(claimed)
    assert refusals and refusals[0]
    ended = app.jobs.get_job(job.id)
    assert ended.state == "failed" and "missing" in (ended.error or "")


def test_cancel_queued_and_running(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    hold = threading.Event()
    worker = running(ScriptedEngine(NORMAL, hold=hold))
    first = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    second = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    _wait(lambda: worker.current_job_id == first.id)
    assert app.jobs.request_cancel(second.id, actor=actor).state == "cancelled"
    assert app.jobs.request_cancel(first.id, actor=actor).state == "running"
    _wait(lambda: app.jobs.get_job(first.id).state == "cancelled")
    assert app.jobs.outcome(first.id).analysis is None
    with pytest.raises(Conflict):
        app.jobs.request_cancel(first.id, actor=actor)
    with pytest.raises(NotFound):
        app.jobs.request_cancel(999, actor=actor)


def test_jobs_wait_for_a_missing_model_and_load_when_installed(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    engine = ScriptedEngine(NORMAL, state="not_installed")
    worker = running(engine)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: worker.waiting_reason is not None)
    reason = worker.waiting_reason or ""
    assert reason.startswith("the model is not installed.")  # why
    assert "Model manager" in reason and "OPHTHAI_MODEL_PATH" in reason  # what to do
    assert app.jobs.get_job(job.id).state == "queued"
    engine.state = "installed"  # e.g. the user pointed OPHTHAI_MODEL_PATH at it
    worker.wake()
    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    assert engine.loads == 1


def test_jobs_queued_after_a_failed_load_say_why_they_wait_and_run_once_fixed(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    """The model's files are damaged: analyses queued since stay queued (never failed),
    and what the clinician's queue and an API client read says why and what to do."""
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    engine = ScriptedEngine(NORMAL, state="error")
    worker = running(engine)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: worker.waiting_reason is not None)
    reason = worker.waiting_reason or ""
    assert reason.startswith("scripted engine is error.")  # the engine's why
    assert "stay queued" in reason  # not failed
    assert "Check model files again" in reason and "POST /api/ai/load-model" in reason  # what to do
    assert app.jobs.get_job(job.id).state == "queued"
    engine.state = "installed"  # the files fixed, and checked again
    worker.wake()
    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    assert worker.waiting_reason is None


@pytest.mark.parametrize("load", ["on first use", "asked for"])
def test_why_jobs_wait_follows_the_model_and_every_change_is_published(
    sqlite_services: Application, actor: Actor, running: Any, load: str
) -> None:
    """What the queue says (the job queue, each job's ``waiting``, the WebSocket) is
    never the reason of an earlier moment: while the files, fixed, are loaded (on first
    use, or as asked: Load, ``load-model``), the jobs wait for that load, not for the
    failed one; then nothing. A load asked for said the failure until it ended, and a
    load on first use, when the worker happened to look at the queue first, said
    ``model loading``: a frontend saw one or the other."""
    app = sqlite_services
    changes: list[str | None] = []
    app.bus.subscribe(
        lambda e: changes.append(e.waiting) if isinstance(e, ev.QueueWaitingChanged) else None
    )
    patient_id = _patient_with_scan(app, actor)
    engine = ScriptedEngine(NORMAL, state="error", load_hold=threading.Event())
    worker = running(engine)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: worker.waiting_reason is not None)
    failed = worker.waiting_reason

    engine.state = "installed"  # the files fixed, and checked again
    if load == "asked for":
        worker.request_load()
    else:
        worker.wake()
    _wait(lambda: engine.state == "loading")
    loading = worker.waiting_reason
    engine.load_hold.set()  # type: ignore[union-attr]
    _wait(lambda: app.jobs.get_job(job.id).state == "done")

    assert failed is not None and failed.startswith("scripted engine is error.")
    assert loading == "model loading"
    assert worker.waiting_reason is None
    assert changes == [failed, "model loading", None]
    assert engine.loads == 1


def test_a_model_gone_when_first_used_is_said_not_installed_once(
    sqlite_services: Application, actor: Actor, running: Any, tmp_path: Path
) -> None:
    """The model's folder removed after it was last checked (installed): the load on
    first use finds it gone. The queue said the engine's message with "check again"
    (the wording of a failed load), then, at the worker's next look, "the model is not
    installed" with what to do: a banner that changed its words for one cause. It says
    the second at once, and only it."""
    app = sqlite_services
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2_5_vl"}', encoding="utf-8")
    for name in ("preprocessor_config.json", "tokenizer.json"):
        (folder / name).write_text("{}", encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"")
    settings = Settings(data_dir=tmp_path / "data", _env_file=None, model_path=folder)
    engine = InferenceEngine(settings)
    assert engine.status().state is ModelState.INSTALLED
    changes: list[str | None] = []
    app.bus.subscribe(
        lambda e: changes.append(e.waiting) if isinstance(e, ev.QueueWaitingChanged) else None
    )
    patient_id = _patient_with_scan(app, actor)
    worker = running(engine)

    shutil.rmtree(folder)
    app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: len(changes) >= 2)
    worker.wake()  # the worker's next look at the queue: it says nothing new
    time.sleep(0.3)

    assert changes[0] == "model loading"
    said = changes[1] or ""
    assert said.startswith(f"the model is not installed. OPHTHAI_MODEL_PATH is {folder}")
    assert "download it" in said and "set OPHTHAI_MODEL_PATH" in said  # what to do
    assert changes == ["model loading", said]


def test_running_jobs_are_requeued_after_a_crash(
    sqlite_services: Application, actor: Actor, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    claimed = app.jobs.claim_next()  # a worker took it, then the process died
    assert claimed is not None and claimed.state == "running"
    with caplog.at_level(logging.INFO):
        running(ScriptedEngine(NORMAL))  # the next start
        _wait(lambda: app.jobs.get_job(job.id).state == "done")
    assert app.jobs.get_job(job.id).attempts == 2
    assert "re-queued 1 analysis interrupted by the last shutdown" in caplog.text


@pytest.mark.parametrize("left", ["running", "queued again"])
def test_a_cancel_of_a_running_analysis_holds_after_the_app_is_killed(
    sqlite_services: Application, actor: Actor, running: Any, left: str
) -> None:
    """The clinician cancels the running analysis and the app is killed (or its worker
    misses the stop window) before the worker has stopped it: at the next start the
    analysis is cancelled, not run again. Likewise for one an unload had queued again."""
    app = sqlite_services
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    other = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    assert app.jobs.claim_next() is not None  # the worker runs the first one
    app.jobs.request_cancel(job.id, actor=actor)  # ...and the process dies before it stops
    if left == "queued again":
        app.jobs.requeue(job.id)
    assert app.jobs.get_job(job.id).state == left.split()[0]
    seen = _events(app)

    running(ScriptedEngine(NORMAL))  # the next start: nothing in memory about the cancel

    _wait(lambda: app.jobs.get_job(other.id).state == "done")
    ended = app.jobs.get_job(job.id)
    assert (ended.state, ended.attempts) == ("cancelled", 1)
    assert app.jobs.outcome(job.id).analysis is None
    assert [e.job_id for e in seen if isinstance(e, ev.AnalysisCancelled)] == [job.id]
    assert not [e for e in seen if isinstance(e, ev.AnalysisStarted) and e.job_id == job.id]


def test_queue_needs_a_scan_and_a_patient(sqlite_services: Application, actor: Actor) -> None:
    app = sqlite_services
    bare = app.patients.create_patient({"name": "No Scan"}, actor=actor)
    with pytest.raises(Conflict, match="no image"):
        app.jobs.queue_patient_analysis(bare.id, actor=actor)
    with pytest.raises(NotFound):
        app.jobs.queue_patient_analysis("ghost", actor=actor)
    assert app.jobs.list_jobs().total == 0


def test_model_unavailable_during_generation_fails_the_job(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    running(ScriptedEngine(NORMAL, fail_with=ModelUnavailable("CUDA out of memory")))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "failed")
    assert app.jobs.get_job(job.id).error == "CUDA out of memory"


def test_deleting_the_patient_mid_analysis_stops_it_and_the_worker_goes_on(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    hold = threading.Event()  # never set: only a cancel ends the first analysis
    engine = ScriptedEngine(DME, hold=hold)
    worker = running(engine)
    first = _patient_with_scan(app, actor)
    second = _patient_with_scan(app, actor)
    job = app.jobs.queue_patient_analysis(first, actor=actor)
    next_job = app.jobs.queue_patient_analysis(second, actor=actor)
    _wait(lambda: worker.current_job_id == job.id)
    app.patients.delete_patient(first, actor=actor)  # the job row goes with the patient
    # The model stops working for a patient who no longer exists and takes the next.
    _wait(lambda: worker.current_job_id == next_job.id)
    hold.set()
    _wait(lambda: app.jobs.get_job(next_job.id).state == "done")
    assert worker.alive


def test_deleting_a_patient_ends_their_open_analyses_with_an_event(
    sqlite_services: Application, actor: Actor
) -> None:
    """A client showing the patient's queued analysis (or waiting for its result)
    hears that it ended; before, the last word was analysis_queued."""
    app = sqlite_services
    seen = _events(app)
    patient_id = _patient_with_scan(app, actor)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    app.patients.delete_patient(patient_id, actor=actor)
    ended = [e for e in seen if isinstance(e, ev.AnalysisCancelled)]
    assert [(e.job_id, e.patient_id) for e in ended] == [(job.id, patient_id)]
    assert seen.index(ended[0]) < next(
        i for i, e in enumerate(seen) if isinstance(e, ev.PatientDeleted)
    )


def test_a_cancel_between_claim_and_start_is_honoured(
    sqlite_services: Application, actor: Actor, running: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = sqlite_services
    claim = app.jobs.claim_next
    claimed, release = threading.Event(), threading.Event()

    def slow_claim() -> Any:
        job = claim()
        if job is not None:
            claimed.set()
            release.wait(5)
        return job

    monkeypatch.setattr(app.jobs, "claim_next", slow_claim)
    running(ScriptedEngine(DME))
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    assert claimed.wait(5)
    assert app.jobs.request_cancel(job.id, actor=actor).state == "running"
    release.set()
    _wait(lambda: app.jobs.get_job(job.id).state not in ("queued", "running"))
    assert app.jobs.get_job(job.id).state == "cancelled"


def test_a_cancelled_queued_job_is_never_claimed(
    sqlite_services: Application, actor: Actor
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    first = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    second = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    app.jobs.request_cancel(first.id, actor=actor)
    claimed = app.jobs.claim_next()
    assert claimed is not None and claimed.id == second.id
    assert app.jobs.get_job(first.id).state == "cancelled"
    assert app.jobs.claim_next() is None


def test_stopping_mid_analysis_requeues_the_job(sqlite_services: Application, actor: Actor) -> None:
    app = sqlite_services
    hold = threading.Event()
    worker = InferenceWorker(ScriptedEngine(DME, hold=hold), app.jobs, app.bus)
    worker.start()
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    _wait(lambda: worker.current_job_id == job.id)
    worker.stop()  # the app is closing
    assert app.jobs.get_job(job.id).state == "queued"
    again = InferenceWorker(ScriptedEngine(DME), app.jobs, app.bus)
    again.start()
    try:
        _wait(lambda: app.jobs.get_job(job.id).state == "done")
    finally:
        again.stop()


def test_a_second_request_for_a_scan_with_an_open_analysis_returns_that_job(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    """Each analysis takes the 7B model minutes: a double click or a client's retry
    joins the queued or running job of the same scan instead of queueing another."""
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    seen = _events(app)
    first, new = app.jobs.ensure_patient_analysis(patient_id, actor=actor)
    again, again_new = app.jobs.ensure_patient_analysis(patient_id, actor=actor)
    assert (new, again_new) == (True, False) and again.id == first.id

    hold = threading.Event()
    worker = running(ScriptedEngine(DME, hold=hold))
    _wait(lambda: worker.current_job_id == first.id)
    while_running = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    assert (while_running.id, while_running.state) == (first.id, "running")
    hold.set()
    _wait(lambda: app.jobs.get_job(first.id).state == "done")

    assert app.jobs.list_jobs(patient_id=patient_id).total == 1
    assert [type(e) for e in seen].count(ev.AnalysisQueued) == 1
    assert [n.type for n in app.notifications.list_notifications().items] == ["critical"]
    after = app.jobs.queue_patient_analysis(patient_id, actor=actor)  # ended: a new one
    assert after.id != first.id


def test_asking_again_while_a_cancelled_analysis_stops_queues_a_new_one(
    sqlite_services: Application, actor: Actor
) -> None:
    """The clinician cancels the running analysis and presses Analyse again before the
    worker has stopped it (it stops after the token it is writing, or after reading the
    image): the new request is not joined to the job being cancelled, which would end
    it cancelled too; it is queued and runs."""
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    first = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    assert app.jobs.claim_next() is not None  # the worker runs it
    app.jobs.request_cancel(first.id, actor=actor)  # still running: asked to stop

    again, new = app.jobs.ensure_patient_analysis(patient_id, actor=actor)
    app.jobs.mark_cancelled(first.id)  # the worker has stopped it

    assert (new, again.state) == (True, "queued") and again.id != first.id
    assert app.jobs.get_job(again.id).state == "queued"
    assert app.jobs.claim_next() == app.jobs.get_job(again.id)


def test_requests_at_the_same_moment_make_one_job(
    sqlite_services: Application, actor: Actor
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    start = threading.Barrier(4)
    ids: list[int] = []

    def request() -> None:
        start.wait()
        ids.append(app.jobs.queue_patient_analysis(patient_id, actor=actor).id)

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(ids)) == 1 and len(ids) == 4
    assert app.jobs.list_jobs(patient_id=patient_id).total == 1


def test_another_scan_of_the_patient_gets_its_own_analysis(
    sqlite_services: Application, actor: Actor
) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    first = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    app.patients.attach_image(patient_id, NewImage(png_bytes((20, 20))), actor=actor)

    newer = app.jobs.queue_patient_analysis(patient_id, actor=actor)

    assert newer.id != first.id and newer.scan_id != first.scan_id
    asked = app.jobs.queue_patient_analysis(patient_id, actor=actor, question="Drusen?")
    assert asked.id != newer.id and asked.scan_id == newer.scan_id  # another question
    again = app.jobs.queue_patient_analysis(patient_id, actor=actor, question="Drusen?")
    assert again.id == asked.id


def test_unloading_the_model_queues_the_running_analysis_again(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    """Another client's unload does not cancel a clinician's analysis: it waits in the
    queue, without loading the model again by itself, and runs once it is loaded."""
    app = sqlite_services
    seen = _events(app)
    hold = threading.Event()
    engine = ScriptedEngine(DME, hold=hold)
    worker = running(engine)
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    _wait(lambda: worker.current_job_id == job.id)

    worker.request_unload()
    _wait(lambda: app.jobs.get_job(job.id).state == "queued" and not worker.commands_pending)
    _wait(lambda: worker.waiting_reason is not None)

    assert engine.state == "installed" and engine.loads == 0
    assert "unloaded" in (worker.waiting_reason or "")
    assert app.jobs.get_job(job.id).error is None
    assert not [e for e in seen if isinstance(e, ev.AnalysisCancelled)]
    assert [e.job_id for e in seen if isinstance(e, ev.AnalysisQueued)] == [job.id, job.id]
    hold.set()
    worker.request_load()
    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    assert app.jobs.get_job(job.id).attempts == 2


@dataclass
class _RaisingWhenStopped(ScriptedEngine):
    """Raises as it is stopped, as a model whose generation breaks off on an error can,
    instead of returning a cancelled result."""

    def generate(self, image: Image.Image, **kwargs: Any) -> Any:
        cancel = kwargs["cancel"]
        while not cancel.wait(0.01):
            pass
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


@pytest.mark.parametrize("stop", ["cancel", "unload"])
def test_an_analysis_that_raises_as_it_is_stopped_ends_as_stopped_not_failed(
    sqlite_services: Application, actor: Actor, running: Any, stop: str
) -> None:
    """Cancelled, it is cancelled; stopped by an unload, it is queued again: not failed
    with the error the stop caused, nor told as a failure to the clinician."""
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    seen = _events(app)
    worker = running(_RaisingWhenStopped(DME))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: worker.current_job_id == job.id)

    if stop == "cancel":
        app.jobs.request_cancel(job.id, actor=actor)
        _wait(lambda: app.jobs.get_job(job.id).state == "cancelled")
    else:
        worker.request_unload()
        _wait(lambda: app.jobs.get_job(job.id).state == "queued" and not worker.commands_pending)
    _wait(lambda: worker.current_job_id is None)

    assert app.jobs.get_job(job.id).error is None
    assert not [e for e in seen if isinstance(e, ev.AnalysisFailed)]
    assert app.notifications.list_notifications().items == ()
    assert worker.alive


def test_an_unload_asked_for_during_a_first_use_load_comes_before_any_analysis(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    """The unload is done as soon as the load is, not after a whole analysis (minutes
    with the 7B model, while the client that asked for it waits); the job stays queued
    and waits for the model to be loaded again, as after any unload."""
    app = sqlite_services
    hold = threading.Event()  # an analysis that would run until released
    engine = ScriptedEngine(DME, state="installed", hold=hold, load_hold=threading.Event())
    worker = running(engine)
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    _wait(lambda: engine.state == "loading")  # the queue loads the model on first use

    worker.request_unload()
    engine.load_hold.set()  # type: ignore[union-attr]
    try:
        _wait(lambda: engine.state == "installed" and not worker.commands_pending, 5.0)
        assert app.jobs.get_job(job.id).state == "queued"
        assert app.jobs.get_job(job.id).attempts == 0
        _wait(lambda: "unloaded" in (worker.waiting_reason or ""))
    finally:
        hold.set()
    worker.request_load()
    _wait(lambda: app.jobs.get_job(job.id).state == "done")


def test_a_new_analysis_after_an_unload_loads_the_model_for_the_queue(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    hold = threading.Event()
    engine = ScriptedEngine(DME, hold=hold)
    worker = running(engine)
    first = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    _wait(lambda: worker.current_job_id == first.id)
    worker.request_unload()
    _wait(lambda: app.jobs.get_job(first.id).state == "queued" and not worker.commands_pending)
    hold.set()

    second = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)

    _wait(lambda: app.jobs.get_job(second.id).state == "done")
    assert app.jobs.get_job(first.id).state == "done" and engine.loads == 1


def test_a_job_cancelled_while_the_model_unloads_stays_cancelled(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    hold = threading.Event()
    worker = running(ScriptedEngine(DME, hold=hold))
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    _wait(lambda: worker.current_job_id == job.id)

    app.jobs.request_cancel(job.id, actor=actor)
    worker.request_unload()

    _wait(lambda: app.jobs.get_job(job.id).state == "cancelled")


def test_a_scan_whose_image_file_is_gone_fails_its_analysis(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    """Not taken for a deleted patient (the job was left running for ever, and every
    later Analyse of the scan joined it)."""
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    scan = app.patients.list_scans(patient_id)[0]
    app.images.path_for(scan.sha256).unlink()
    running(ScriptedEngine(DME))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "failed")
    assert "missing" in (app.jobs.get_job(job.id).error or "")


def test_an_unexpected_error_keeps_its_text_in_the_job_not_in_the_log(
    sqlite_services: Application, actor: Actor, running: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The clinician sees the error's text on the job; the log gets its kind and where it
    was raised, as a text can quote what the job read (a patient's name)."""
    app = sqlite_services
    patient_id = app.patients.create_patient(
        {"name": "Queue Patient"}, actor=actor, image=NewImage(png_bytes())
    ).id
    running(ScriptedEngine(DME, fail_with=RuntimeError("no room for Jane Doeling's scan")))
    with caplog.at_level(logging.INFO):
        job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
        _wait(lambda: app.jobs.get_job(job.id).state == "failed")

    assert "Jane Doeling" in (app.jobs.get_job(job.id).error or "")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"analysis job {job.id} failed unexpectedly: RuntimeError at " in logged
    assert "Doeling" not in logged


def test_an_error_in_the_worker_loop_logs_where_it_was_raised_and_retries(
    sqlite_services: Application,
    actor: Actor,
    running: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The loop's catch-all logged the error's kind alone ("the inference worker hit
    SystemError; retrying"), which could not be traced: it says where it was raised now,
    never its text, and the queue moves once the error is gone."""
    app = sqlite_services
    claim = app.jobs.claim_next
    failures = [RuntimeError("claim failed for Jane Doeling")]

    def failing_claim() -> Any:
        if failures:
            raise failures.pop()
        return claim()

    monkeypatch.setattr(app.jobs, "claim_next", failing_claim)
    monkeypatch.setattr("ophthai_desktop.core.worker.IDLE_POLL_S", 0.05)
    with caplog.at_level(logging.INFO):
        running(ScriptedEngine(DME))
        job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
        _wait(lambda: app.jobs.get_job(job.id).state == "done")

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "the inference worker hit RuntimeError at test_jobs_worker.py:" in logged
    assert "in failing_claim (from worker.py:" in logged and "in run); retrying" in logged
    assert "Doeling" not in logged


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_scan_whose_stored_image_is_damaged_fails_with_a_reason(
    sqlite_services: Application, actor: Actor, running: Any, damage: str
) -> None:
    """Not "unexpected error: UnidentifiedImageError: cannot identify image file
    <_io.BytesIO object at 0x...>": the clinician is told what is wrong and what to do."""
    app = sqlite_services
    patient_id = app.patients.create_patient(
        {"name": "Queue Patient"}, actor=actor, image=NewImage(png_bytes((400, 300)))
    ).id
    path = app.images.path_for(app.patients.list_scans(patient_id)[0].sha256)
    data = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(b"not an image" if damage == "garbage" else data[: len(data) // 2])
    running(ScriptedEngine(DME))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "failed")
    error = app.jobs.get_job(job.id).error or ""
    assert "damaged" in error and "again" in error
    assert "unexpected" not in error and "BytesIO" not in error


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_a_damaged_stored_image_s_reason_leaves_out_pillow_s_bracketed_details(
    sqlite_services: Application, actor: Actor, running: Any, fmt: str
) -> None:
    """The reason said Pillow's details in brackets inside its own: "damaged or not an
    image (image file is truncated (81 bytes not processed))", as the image check at
    ingest no longer does. A TIFF is decoded by the worker, a JPEG by the engine."""
    app = sqlite_services
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, fmt)
    data = buffer.getvalue()
    patient_id = app.patients.create_patient(
        {"name": "Queue Patient"}, actor=actor, image=NewImage(data)
    ).id
    path = app.images.path_for(app.patients.list_scans(patient_id)[0].sha256)
    path.chmod(0o644)
    path.write_bytes(data[: len(data) * 2 // 3])
    running(_DecodingEngine(DME))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "failed")

    error = app.jobs.get_job(job.id).error or ""
    assert "damaged or not an image (image file is truncated). Add the image" in error, error
    assert "not processed" not in error


def test_a_scan_with_more_pixels_than_pillow_decodes_names_the_limit_and_its_setting(
    sqlite_services: Application, actor: Actor, running: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Taken in under a higher limit, a scan too large to decode now failed with
    Pillow's words ("exceeds limit of … pixels, could be decompression bomb DOS
    attack"), a limit no setting names: the reason says ours and what raises it."""
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)  # 40x30: 1,200 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    running(ScriptedEngine(DME))
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "failed")

    limit = f"{app.settings.max_image_pixels:,}"
    assert app.jobs.get_job(job.id).error == (
        "The scan's image has too many pixels to decode safely; the limit is "
        f"{limit} pixels (OPHTHAI_MAX_IMAGE_PIXELS)."
    )


@dataclass
class _DecodingEngine(ScriptedEngine):
    """Decodes the image as the real engine does, to an eighth of its size, first."""

    decoded_at: list[tuple[int, int]] = field(default_factory=list)

    def generate(self, image: Image.Image, **kwargs: Any) -> Any:
        prepare_image(image, fit=lambda size: (size[0] // 8, size[1] // 8))
        self.decoded_at.append(image.size)  # a JPEG drafted smaller says so here
        return super().generate(image, **kwargs)


def _large_jpeg() -> bytes:
    rng = np.random.default_rng(3)
    buffer = io.BytesIO()
    noise = Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8))
    noise.resize((1600, 1200)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_a_stored_jpeg_is_left_to_the_engine_to_decode_reduced(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    """The worker does not decode a JPEG's every pixel (~1 GB for 120 MP) before the
    engine decodes it at the scale the model's size allows."""
    app = sqlite_services
    patient_id = app.patients.create_patient(
        {"name": "Queue Patient"}, actor=actor, image=NewImage(_large_jpeg())
    ).id
    engine = _DecodingEngine(DME)
    running(engine)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    assert engine.decoded_at == [(400, 300)]


def test_a_stored_jpeg_cut_short_fails_with_a_reason_from_the_engines_decode(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    patient_id = app.patients.create_patient(
        {"name": "Queue Patient"}, actor=actor, image=NewImage(_large_jpeg())
    ).id
    path = app.images.path_for(app.patients.list_scans(patient_id)[0].sha256)
    data = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(data[: len(data) * 9 // 10])
    engine = _DecodingEngine(DME)
    running(engine)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: app.jobs.get_job(job.id).state == "failed")
    error = app.jobs.get_job(job.id).error or ""
    assert "damaged" in error and "truncated" in error and "again" in error
    assert "unexpected" not in error and "BytesIO" not in error


def test_an_analysis_asked_for_again_runs_a_queue_held_since_an_unload(
    sqlite_services: Application, actor: Actor, running: Any
) -> None:
    app = sqlite_services
    hold = threading.Event()
    engine = ScriptedEngine(DME, hold=hold)
    worker = running(engine)
    patient_id = _patient_with_scan(app, actor)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    _wait(lambda: worker.current_job_id == job.id)
    worker.request_unload()
    _wait(lambda: app.jobs.get_job(job.id).state == "queued" and not worker.commands_pending)
    assert worker.holding
    hold.set()

    again, new = app.jobs.ensure_patient_analysis(patient_id, actor=actor)
    assert (again.id, new) == (job.id, False)
    worker.resume_queue()  # what Analyse and POST .../analyze do for a queued job

    _wait(lambda: app.jobs.get_job(job.id).state == "done")
    assert engine.loads == 1


def test_queue_a_chosen_scan_of_the_patient(sqlite_services: Application, actor: Actor) -> None:
    app = sqlite_services
    patient_id = _patient_with_scan(app, actor)
    other_id = _patient_with_scan(app, actor)
    first_scan = app.patients.list_scans(patient_id)[0]
    app.patients.attach_image(patient_id, NewImage(png_bytes((20, 20))), actor=actor)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor, scan_id=first_scan.id)
    assert job.scan_id == first_scan.id  # not the newer scan
    other_scan = app.patients.list_scans(other_id)[0]
    with pytest.raises(NotFound):
        app.jobs.queue_patient_analysis(patient_id, actor=actor, scan_id=other_scan.id)


def test_stopping_during_a_model_load_does_not_wait_for_it(
    sqlite_services: Application, actor: Actor
) -> None:
    """A load cannot be interrupted (minutes for the 7B model): stopping gives up on it
    after a short grace, and the loop, once the load ends, claims nothing."""
    app = sqlite_services
    release = threading.Event()
    engine = ScriptedEngine(NORMAL, state="installed", load_hold=release)
    worker = InferenceWorker(engine, app.jobs, app.bus)
    worker.start()
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    try:
        _wait(lambda: engine.state == "loading")
        started = time.monotonic()
        assert worker.stop() is False
        waited = time.monotonic() - started
        assert LOAD_STOP_WAIT_S <= waited < LOAD_STOP_WAIT_S + 2.0
        assert worker.alive
    finally:
        release.set()
    _wait(lambda: not worker.alive)
    assert engine.loads == 1
    assert app.jobs.get_job(job.id).state == "queued"  # left for the next start


def _claimed_with_result(app: Application, patient_id: str, actor: Actor) -> Callable[[], None]:
    """Queue and claim an analysis of the patient; returns the worker's completing it."""
    app.jobs.queue_patient_analysis(patient_id, actor=actor, question="again")
    job = app.jobs.claim_next()
    assert job is not None
    result = ScriptedEngine(DME)._result(cancelled=False)

    def complete() -> None:
        with contextlib.suppress(NotFound):  # the patient was deleted first
            app.jobs.complete(job, result)

    return complete


def test_an_analysis_finishing_while_its_patient_is_deleted_is_announced_gone(
    app_services: Application, actor: Actor
) -> None:
    """The worker's result lands between the deletion's look at the patient's open
    analyses and notifications and its commit. Before, the finished job was announced
    cancelled after analysis_finished, and the alarm's notification went with the
    patient without notification_deleted: clients kept showing it."""
    app = app_services
    seen = _events(app)
    patient_id = _patient_with_scan(app, actor)
    complete = _claimed_with_result(app, patient_id, actor)
    with meanwhile(app, "FROM jobs", complete):
        app.patients.delete_patient(patient_id, actor=actor)
    finished = {e.job_id for e in seen if isinstance(e, ev.AnalysisFinished)}
    cancelled = {e.job_id for e in seen if isinstance(e, ev.AnalysisCancelled)}
    assert len(finished | cancelled) == 1 and not finished & cancelled
    created = {e.notification.id for e in seen if isinstance(e, ev.NotificationCreated)}
    deleted = {e.notification_id for e in seen if isinstance(e, ev.NotificationDeleted)}
    assert created <= deleted
    assert app.notifications.list_notifications().total == 0


def test_a_verdict_given_while_a_new_result_arrives_is_on_the_analysis_shown(
    app_services: Application, actor: Actor
) -> None:
    """The verdict reads the newest analysis, and the worker stores a newer one before
    the verdict commits. Before, the verdict went on the older analysis and the patient
    read approved at scheduling while their newest result (the one shown) was still
    preliminary; now the verdict waits for the result or the result for the verdict."""
    app = app_services
    patient_id = _patient_with_scan(app, actor)
    app.jobs.queue_patient_analysis(patient_id, actor=actor)
    claimed = app.jobs.claim_next()
    assert claimed is not None
    app.jobs.complete(claimed, ScriptedEngine(NORMAL)._result(cancelled=False))
    complete = _claimed_with_result(app, patient_id, actor)
    with meanwhile(app, "FROM analyses", complete):
        app.patients.validate_analysis(patient_id, approved=True, clinician="Dr A", actor=actor)
    patient = app.patients.get_patient(patient_id)
    newest = app.patients.list_analyses(patient_id)[0]
    assert patient.latest_analysis is not None and patient.latest_analysis.id == newest.id
    assert (patient.validation_status is None) == (newest.status == "preliminary")
    assert (patient.workflow_step == 2) == (newest.status == "preliminary")


def test_a_cancel_as_the_worker_claims_the_job_is_one_or_the_other(
    app_services: Application, actor: Actor
) -> None:
    """The worker claims the queued job between the cancel's look at it and its commit.
    Before, the cancel answered cancelled (and sent analysis_cancelled, no request to
    stop) while the worker ran the job to the end."""
    app = app_services
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    claimed: list[Any] = []
    with meanwhile(app, "jobs", lambda: claimed.append(app.jobs.claim_next())):
        cancelled = app.jobs.request_cancel(job.id, actor=actor)
    if claimed[0] is None:  # the cancel came first: the job never runs
        assert cancelled.state == "cancelled"
    else:  # the worker came first: asked to stop, it ends the job itself
        assert cancelled.state == "running"
    assert app.jobs.get_job(job.id).state == cancelled.state


@pytest.mark.parametrize("ending", ["fail", "mark_cancelled"])
def test_a_job_ended_while_its_patient_is_deleted_is_one_or_the_other(
    app_services: Application, actor: Actor, ending: str
) -> None:
    """The deletion lands between the job's look at its row and its write. Before, the
    write found no row and SQLAlchemy's StaleDataError came out (logged by the worker as
    the job store failing); now the job is ended first, or it is gone (NotFound)."""
    app = app_services
    patient_id = _patient_with_scan(app, actor)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    assert app.jobs.claim_next() is not None

    def delete() -> None:
        app.patients.delete_patient(patient_id, actor=actor)

    with meanwhile(app, "jobs", delete), contextlib.suppress(NotFound):
        if ending == "fail":
            app.jobs.fail(job.id, "the GPU fell off the bus")
        else:
            app.jobs.mark_cancelled(job.id)
    assert not app.patients.exists(patient_id)
    with pytest.raises(NotFound):  # either order ends so; neither raises anything else
        app.jobs.get_job(job.id)


@pytest.mark.parametrize("ending", ["fail", "mark_cancelled"])
def test_a_job_ended_as_its_patient_is_deleted_is_announced_once(
    app_services: Application, actor: Actor, ending: str
) -> None:
    """The deletion runs between the job's end being written and its commit. Before, on
    PostgreSQL the deletion (not locked out: the job's end did not lock the patient)
    read the job still running and announced it cancelled, after the worker had
    announced its end: two ends of one analysis for clients (analysis_failed then
    analysis_cancelled). Now the deletion waits for the job's end and leaves it be."""
    app = app_services
    seen = _events(app)
    patient_id = _patient_with_scan(app, actor)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
    assert app.jobs.claim_next() is not None

    def delete() -> None:
        app.patients.delete_patient(patient_id, actor=actor)

    with meanwhile(app, "UPDATE jobs", delete):
        if ending == "fail":
            app.jobs.fail(job.id, "the GPU fell off the bus")
        else:
            app.jobs.mark_cancelled(job.id)
    assert not app.patients.exists(patient_id)
    ended = [
        e
        for e in seen
        if isinstance(e, ev.AnalysisFailed | ev.AnalysisCancelled) and e.job_id == job.id
    ]
    assert len(ended) == 1
    expected = ev.AnalysisFailed if ending == "fail" else ev.AnalysisCancelled
    assert isinstance(ended[0], expected)
    deleted = next(i for i, e in enumerate(seen) if isinstance(e, ev.PatientDeleted))
    assert seen.index(ended[0]) < deleted


def test_a_queued_job_cancelled_as_its_patient_is_deleted_is_announced_once(
    app_services: Application, actor: Actor
) -> None:
    """As above, for a queued analysis someone cancels: before, on PostgreSQL the
    deletion announced it cancelled a second time."""
    app = app_services
    seen = _events(app)
    patient_id = _patient_with_scan(app, actor)
    job = app.jobs.queue_patient_analysis(patient_id, actor=actor)

    def delete() -> None:
        app.patients.delete_patient(patient_id, actor=actor)

    with meanwhile(app, "UPDATE jobs", delete):
        assert app.jobs.request_cancel(job.id, actor=actor).state == "cancelled"
    assert not app.patients.exists(patient_id)
    ended = [e for e in seen if isinstance(e, ev.AnalysisCancelled) and e.job_id == job.id]
    assert len(ended) == 1


class _RaceEngine(ScriptedEngine):
    """Ends the analysis (failing, or cancelled), and has the patient deleted by another
    thread as the worker records that end: at the worker's next statement on the jobs."""

    def __init__(self, app: Application, patient_id: str, actor: Actor, *, fail: bool) -> None:
        super().__init__(NORMAL)
        self.app, self.patient_id, self.actor, self.fail = app, patient_id, actor, fail
        self.race = contextlib.ExitStack()
        self.armed = False

    def generate(self, image: Any, **_kwargs: Any) -> Any:
        if not self.armed:  # the first analysis: its patient's
            self.armed = True
            app, patient_id, actor = self.app, self.patient_id, self.actor
            self.race.enter_context(
                meanwhile(app, "jobs", lambda: app.patients.delete_patient(patient_id, actor=actor))
            )
            if self.fail:
                raise ModelUnavailable("CUDA out of memory")
            return self._result(cancelled=True)
        return self._result(cancelled=False)


@pytest.mark.parametrize("fail", [True, False], ids=["fail", "cancel"])
def test_the_worker_ending_a_job_as_its_patient_is_deleted_logs_no_error(
    sqlite_services: Application,
    actor: Actor,
    running: Any,
    caplog: pytest.LogCaptureFixture,
    fail: bool,
) -> None:
    """Before, the deletion landing between the worker's look at the job and its write
    was logged as an error ("failed unexpectedly: StaleDataError", or "the inference
    worker hit StaleDataError; retrying" and a second's pause): nothing had gone wrong."""
    app = sqlite_services
    seen = _events(app)
    patient_id = _patient_with_scan(app, actor)
    engine = _RaceEngine(app, patient_id, actor, fail=fail)
    worker = running(engine)
    with caplog.at_level(logging.INFO, logger="ophthai_desktop"):
        job = app.jobs.queue_patient_analysis(patient_id, actor=actor)
        _wait(lambda: not app.patients.exists(patient_id) and worker.current_job_id is None)
        engine.race.close()
        # The worker goes on at once: the next analysis runs.
        other = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
        _wait(lambda: app.jobs.get_job(other.id).state == "done", timeout_s=5)
    problems = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR or "unexpected" in r.getMessage()
    ]
    assert problems == []
    ended = [
        e
        for e in seen
        if isinstance(e, ev.AnalysisFailed | ev.AnalysisCancelled) and e.job_id == job.id
    ]
    assert len(ended) == 1  # said once, by the worker or by the deletion
    deleted = next(i for i, e in enumerate(seen) if isinstance(e, ev.PatientDeleted))
    assert seen.index(ended[0]) < deleted


def test_jobs_filtered_by_an_empty_patient_id_are_refused_not_every_job(
    app_services: Application, actor: Actor
) -> None:
    app_services.jobs.queue_image_analysis(png_bytes(), actor=actor)

    with pytest.raises(InvalidInput, match="must not be empty") as caught:
        app_services.jobs.list_jobs(patient_id="")

    assert caught.value.field == "patient_id"


def test_a_job_cancelled_as_the_app_closes_stays_cancelled(
    sqlite_services: Application, actor: Actor
) -> None:
    """The clinician cancels the running analysis and closes the app before the worker
    has ended it: the job ends cancelled, not queued again to run at the next start."""
    app = sqlite_services
    engine = ScriptedEngine(DME, hold=threading.Event())
    generate = engine.generate
    stopped, closing = threading.Event(), threading.Event()

    def generate_then_wait(*args: Any, **kwargs: Any) -> Any:
        result = generate(*args, **kwargs)
        stopped.set()
        closing.wait(5)  # the app starts closing before the worker ends the job
        return result

    engine.generate = generate_then_wait  # type: ignore[method-assign]
    worker = InferenceWorker(engine, app.jobs, app.bus)
    worker.start()
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    _wait(lambda: worker.current_job_id == job.id)
    assert app.jobs.request_cancel(job.id, actor=actor).state == "running"
    assert stopped.wait(5)
    worker.request_stop()  # the app is closing
    closing.set()
    assert worker.stop()
    assert app.jobs.get_job(job.id).state == "cancelled"
    assert app.jobs.outcome(job.id).analysis is None


def _watch_folder_jobs(app: Application, count: int) -> list[int]:
    """``count`` analyses queued the way the watch folder queues them (files taken in)."""
    layout = FolderLayout.under(app.settings.resolved_watch_folder)
    layout.ensure()
    jobs = []
    for i in range(count):
        (layout.root / f"device_{i}.png").write_bytes(png_bytes((32 + i, 24), (i, 9, 9)))
        result = app.ingest.ingest_file(layout.root / f"device_{i}.png", layout)
        assert result.job_id is not None, result
        jobs.append(result.job_id)
    return jobs


def test_an_analysis_someone_asks_for_runs_before_the_watch_folders_queue(
    sqlite_services: Application, actor: Actor
) -> None:
    """After a burst from a device, the clinician's own request is the next one run,
    not hours later; the watch folder's jobs then run oldest first."""
    app = sqlite_services
    background = _watch_folder_jobs(app, 3)
    asked = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    later = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)

    claimed = [app.jobs.claim_next() for _ in range(6)]

    assert [job.id if job else None for job in claimed] == [asked.id, later.id, *background, None]
    assert [app.jobs.get_job(i).priority for i in background] == [JobPriority.BACKGROUND] * 3
    assert asked.priority == later.priority == JobPriority.INTERACTIVE


def test_how_many_run_before_a_queued_analysis_follows_the_worker_s_order(
    sqlite_services: Application, actor: Actor
) -> None:
    """``queued_ahead`` counts what ``claim_next`` takes first: requested analyses before
    the watch folder's, the oldest first within each; a job moved ahead is as old as
    when the watch folder queued it."""
    app = sqlite_services
    background = _watch_folder_jobs(app, 3)
    asked = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    later = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    expected_order = [asked.id, later.id, *background]
    assert [app.jobs.queued_ahead(i) for i in expected_order] == [0, 1, 2, 3, 4]
    patient_id = app.jobs.get_job(background[2]).patient_id
    assert patient_id is not None
    app.jobs.ensure_patient_analysis(patient_id, actor=actor)  # moved ahead
    expected_order = [background[2], asked.id, later.id, background[0], background[1]]
    assert [app.jobs.queued_ahead(i) for i in expected_order] == [0, 1, 2, 3, 4]

    claimed = [app.jobs.claim_next() for _ in expected_order]
    assert [job.id if job else None for job in claimed] == expected_order


def test_asking_for_a_scan_the_watch_folder_queued_moves_that_analysis_ahead(
    sqlite_services: Application, actor: Actor
) -> None:
    """The clinician opens a patient who came from the watch folder and presses Analyse:
    the request joins the queued job (no second analysis) and that job runs next."""
    app = sqlite_services
    first, second, third = _watch_folder_jobs(app, 3)
    patient_id = app.jobs.get_job(third).patient_id
    assert patient_id is not None

    job, new = app.jobs.ensure_patient_analysis(patient_id, actor=actor)

    assert (job.id, new, job.priority) == (third, False, JobPriority.INTERACTIVE)
    claimed = [app.jobs.claim_next() for _ in range(3)]
    assert [j.id if j else None for j in claimed] == [third, first, second]
    entry = app.audit.list_events(entity_type="job", entity_id=str(third)).items[0]
    assert (entry.action, entry.actor) == ("prioritise", actor.who)


def test_every_queued_analysis_is_announced_with_its_priority(
    sqlite_services: Application, actor: Actor
) -> None:
    """Clients draw the queue from the events: a watch-folder job is announced as
    background, one asked for as interactive, and one put back in the queue (the model
    unloaded under it) keeps its own."""
    app = sqlite_services
    seen = _events(app)
    (from_folder,) = _watch_folder_jobs(app, 1)
    asked = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    claimed = [app.jobs.claim_next(), app.jobs.claim_next()]
    assert [job.id if job else None for job in claimed] == [asked.id, from_folder]
    app.jobs.requeue(from_folder, announce=True)
    app.jobs.requeue(asked.id, announce=True)

    queued = [(e.job_id, e.priority, e.requeued) for e in seen if isinstance(e, ev.AnalysisQueued)]
    assert queued == [
        (from_folder, JobPriority.BACKGROUND, False),
        (asked.id, JobPriority.INTERACTIVE, False),
        (from_folder, JobPriority.BACKGROUND, True),
        (asked.id, JobPriority.INTERACTIVE, True),
    ]


def test_moving_a_watch_folder_analysis_ahead_is_announced_once_after_its_commit(
    sqlite_services: Application, actor: Actor
) -> None:
    """A client showing the queue in the order it runs hears of the move; what it then
    reads already says so. Asking again (already interactive) announces nothing."""
    app = sqlite_services
    _first, second = _watch_folder_jobs(app, 2)
    heard: list[tuple[ev.Event, int]] = []

    def on_event(event: ev.Event) -> None:
        if isinstance(event, ev.AnalysisPrioritised | ev.AnalysisQueued):
            heard.append((event, app.jobs.get_job(event.job_id).priority))

    app.bus.subscribe(on_event)
    patient_id = app.jobs.get_job(second).patient_id
    assert patient_id is not None

    app.jobs.ensure_patient_analysis(patient_id, actor=actor)
    app.jobs.ensure_patient_analysis(patient_id, actor=actor)

    scan_id = app.jobs.get_job(second).scan_id
    moved = ev.AnalysisPrioritised(second, patient_id, scan_id, JobPriority.INTERACTIVE)
    assert heard == [(moved, JobPriority.INTERACTIVE)]


def test_asking_again_for_a_running_watch_folder_analysis_changes_nothing(
    sqlite_services: Application, actor: Actor
) -> None:
    app = sqlite_services
    (only,) = _watch_folder_jobs(app, 1)
    running = app.jobs.claim_next()
    assert running is not None and running.id == only

    job, new = app.jobs.ensure_patient_analysis(running.patient_id or "", actor=actor)

    assert (job.id, new, job.state, job.priority) == (only, False, "running", 0)
    assert app.audit.list_events(entity_type="job", entity_id=str(only)).total == 1  # queued


def test_the_queue_s_first_read_lists_what_runs_next_then_the_newest_finished(
    sqlite_services: Application, actor: Actor
) -> None:
    """``list_queue``: the running job, then the queued ones in the order the worker takes
    them, up to the limit; the ids of the open jobs past it; the newest finished jobs in
    the room left. A newest-first page left out what runs next behind newer jobs."""
    app = sqlite_services
    finished = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    app.jobs.request_cancel(finished.id, actor=actor)
    background = _watch_folder_jobs(app, 4)
    asked = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    running = app.jobs.claim_next()  # the requested one
    assert running is not None and running.id == asked.id
    later = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)

    queue = app.jobs.list_queue(limit=4, finished=10)
    assert [job.id for job in queue.open] == [asked.id, later.id, background[0], background[1]]
    assert [job.state for job in queue.open] == ["running", "queued", "queued", "queued"]
    assert [job_id for job_id, _patient in queue.more_open] == background[2:]
    assert [patient for _job, patient in queue.more_open] == [
        app.jobs.get_job(i).patient_id for i in background[2:]
    ]
    assert queue.finished == ()  # no room left below the limit

    roomy = app.jobs.list_queue(limit=10, finished=10)
    assert len(roomy.open) == 6 and roomy.more_open == ()
    assert [job.id for job in roomy.finished] == [finished.id]
    assert app.jobs.list_queue(limit=10, finished=0).finished == ()
    with pytest.raises(InvalidInput):
        app.jobs.list_queue(limit=0, finished=10)


def _running_job(app: Application, actor: Actor) -> tuple[str, JobRecord, Callable[[], None]]:
    """A patient's analysis running: the patient's id, the job, and what finishes it."""
    patient_id = _patient_with_scan(app, actor)
    app.jobs.queue_patient_analysis(patient_id, actor=actor)
    running = app.jobs.claim_next()
    assert running is not None

    def finish() -> None:
        app.jobs.complete(running, ScriptedEngine(NORMAL)._result(cancelled=False))

    return patient_id, running, finish


def test_the_queue_is_read_at_one_moment_while_a_job_finishes(
    app_services: Application, actor: Actor
) -> None:
    """A job that finishes while the queue is read is listed once, as it was when the
    read began: open and running, not also (or only half) among the finished ones."""
    app = app_services
    _patient, running, finish = _running_job(app, actor)

    # Right after the first read (the open jobs' ids), the worker finishes the job.
    with meanwhile(app, "SELECT jobs.id, jobs.patient_id", finish):
        queue = app.jobs.list_queue(limit=10, finished=10)

    listed = [(job.id, job.state) for job in (*queue.open, *queue.finished)]
    assert listed == [(running.id, "running")]
    assert app.jobs.get_job(running.id).state == "done"  # it did finish meanwhile


@pytest.mark.parametrize("read", ["get_patient", "list_patients"])
def test_a_patient_is_read_at_one_moment_while_their_analysis_finishes(
    app_services: Application, actor: Actor, read: str
) -> None:
    """A patient read while their analysis finishes is as they were before it, or
    after: not still at the analysis step with the finished analysis beside it."""
    app = app_services
    patient_id, _job, finish = _running_job(app, actor)

    # Right after the patient's row is read, before their scans and analyses are.
    with meanwhile(app, "FROM patients", finish):
        if read == "get_patient":
            patient = app.patients.get_patient(patient_id)
        else:
            (patient,) = app.patients.list_patients().items

    assert (patient.workflow_step, patient.latest_analysis) == (1, None)
    assert app.patients.get_patient(patient_id).latest_analysis is not None  # it finished


def _analysed(app: Application, actor: Actor, name: str, engine: ScriptedEngine) -> str:
    """A patient of ``name`` whose scan the queue analysed with ``engine``'s answer."""
    patient_id = app.patients.create_patient(
        {"name": name}, actor=actor, image=NewImage(png_bytes((40, 30)))
    ).id
    app.jobs.queue_patient_analysis(patient_id, actor=actor)
    claimed = app.jobs.claim_next()
    assert claimed is not None and claimed.patient_id == patient_id
    app.jobs.complete(claimed, engine._result(cancelled=False))
    return patient_id


def _unread(app: Application) -> list[tuple[str | None, str]]:
    return sorted(
        (n.patient_id, n.message[:30])
        for n in app.notifications.list_notifications(unread_only=True).items
    )


@pytest.mark.parametrize("approved", [True, False])
def test_a_verdict_marks_the_notifications_its_analysis_raised_read(
    sqlite_services: Application, actor: Actor, approved: bool
) -> None:
    """The watch folder's abnormal result alarmed; the clinician approves or rejects it.
    Before, its critical notification stayed unread and the badge grew all day with
    alarms already acted on; now the verdict reads it, announced as a notification
    marked read is. Another patient's alarm, and a notification made after the
    result, stay unread."""
    app = sqlite_services
    patient_id = _analysed(app, actor, "Alarm Patient", ScriptedEngine(DME))
    other_id = _analysed(app, actor, "Other Patient", ScriptedEngine(DME))
    later = app.notifications.create_notification(
        "Call the patient back", type="critical", patient_id=patient_id, actor=actor
    )
    [alarm] = [
        n
        for n in app.notifications.list_notifications(patient_id=patient_id).items
        if n.id != later.id
    ]
    seen = _events(app)

    app.patients.validate_analysis(patient_id, approved=approved, clinician="Dr A", actor=actor)

    assert app.notifications.get_notification(alarm.id).read
    assert _unread(app) == sorted(
        [(patient_id, "Call the patient back"), (other_id, "Abnormal finding for patient O")]
    )
    assert app.notifications.unread_count() == 2
    updated = [e.notification for e in seen if isinstance(e, ev.NotificationUpdated)]
    assert [(n.id, n.read) for n in updated] == [(alarm.id, True)]


def test_a_verdict_given_through_the_patient_record_marks_its_alarm_read(
    sqlite_services: Application, actor: Actor
) -> None:
    """The seed's clients give the verdict by sending ``validationStatus``: the same.
    (Rejected: an answer that could not be read has nothing to approve.)"""
    app = sqlite_services
    patient_id = _analysed(app, actor, "Record Patient", ScriptedEngine(None))
    seen = _events(app)

    app.patients.update_patient(patient_id, {"validation_status": "rejected"}, actor=actor)

    assert app.notifications.unread_count() == 0  # "could not be read": acted on
    assert [type(e) for e in seen if isinstance(e, ev.NotificationUpdated)] == [
        ev.NotificationUpdated
    ]


def test_a_verdict_on_a_newer_result_leaves_an_earlier_result_s_alarm(
    sqlite_services: Application, actor: Actor
) -> None:
    """Only the alarm of the analysis given the verdict is read: one an earlier
    analysis of the patient raised (not the one the clinician read) stays."""
    app = sqlite_services
    patient_id = _analysed(app, actor, "Twice Patient", ScriptedEngine(DME))
    [first] = app.notifications.list_notifications(patient_id=patient_id).items
    app.jobs.queue_patient_analysis(patient_id, actor=actor)
    claimed = app.jobs.claim_next()
    assert claimed is not None
    app.jobs.complete(claimed, ScriptedEngine(DME)._result(cancelled=False))
    newest = app.notifications.list_notifications(patient_id=patient_id).items[0]
    assert newest.id != first.id

    app.patients.validate_analysis(patient_id, approved=True, clinician="Dr A", actor=actor)

    assert app.notifications.get_notification(newest.id).read
    assert not app.notifications.get_notification(first.id).read


@pytest.mark.parametrize(
    "answer",
    [
        DME,  # the alarm
        None,  # "could not be read"
        ParsedAnswer(classification="Ungradable", confidence=90.0, explanation="Opacity."),
    ],
    ids=["alarm", "unread", "ungradable"],
)
def test_a_notification_an_analysis_raises_names_that_analysis(
    sqlite_services: Application, actor: Actor, answer: ParsedAnswer | None
) -> None:
    """The alarm, "could not be read" and "could not be graded" name the analysis that
    raised them, as stored and as announced; one the clinician makes names none."""
    app = sqlite_services
    seen = _events(app)
    patient_id = _analysed(app, actor, "Linked Patient", ScriptedEngine(answer))
    manual = app.notifications.create_notification(
        "Call the patient back", patient_id=patient_id, actor=actor
    )
    [analysis] = app.patients.list_analyses(patient_id)

    [raised] = [n for n in app.notifications.list_notifications().items if n.id != manual.id]
    assert raised.analysis_id == analysis.id
    assert app.notifications.get_notification(manual.id).analysis_id is None
    announced = [e.notification for e in seen if isinstance(e, ev.NotificationCreated)]
    assert [(n.id, n.analysis_id) for n in announced] == [
        (raised.id, analysis.id),
        (manual.id, None),
    ]


def test_a_verdict_leaves_a_notification_worded_as_an_alarm_that_it_did_not_raise(
    sqlite_services: Application, actor: Actor
) -> None:
    """A notification in an alarm's words that the analysis given the verdict did not
    raise stays unread: one the clinician made (an alarm copied as a reminder), and one
    an earlier analysis of the patient raised. Before, a notification was the
    analysis's if it was the patient's, began as an alarm does and was made since the
    analysis was stored, so the verdict read both."""
    app = sqlite_services
    patient_id = _analysed(app, actor, "Worded Patient", ScriptedEngine(DME))
    [earlier] = app.patients.list_analyses(patient_id)
    app.jobs.queue_patient_analysis(patient_id, actor=actor)
    claimed = app.jobs.claim_next()
    assert claimed is not None
    app.jobs.complete(claimed, ScriptedEngine(DME)._result(cancelled=False))
    newest = app.notifications.list_notifications(patient_id=patient_id).items[0]
    reminder = app.notifications.create_notification(
        "Abnormal finding for patient Worded Patient: check the other eye too",
        type="critical",
        patient_id=patient_id,
        actor=actor,
    )
    with app.db.session() as session:  # the earlier analysis's, stored late
        late = m.Notification(
            patient_id=patient_id,
            analysis_id=earlier.id,
            message="Possible abnormal finding for patient Worded Patient: DME",
            type="critical",
        )
        session.add(late)
        session.flush()
        late_id = late.id

    app.patients.validate_analysis(patient_id, approved=True, clinician="Dr A", actor=actor)

    assert app.notifications.get_notification(newest.id).read
    assert not app.notifications.get_notification(reminder.id).read
    assert not app.notifications.get_notification(late_id).read


def test_a_result_whose_commit_postgresql_rolled_back_is_stored_again_without_an_outage_line(
    sqlite_services: Application,
    actor: Actor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A deadlock ended the commit (the database answers): the worker stores the result
    at its next try, and the log does not say it waits for the database to answer."""
    from ophthai_desktop.core.errors import ChangeRolledBack

    app = sqlite_services
    job = app.jobs.queue_patient_analysis(_patient_with_scan(app, actor), actor=actor)
    claimed = app.jobs.claim_next()
    assert claimed is not None and claimed.id == job.id
    complete = app.jobs.complete
    tries: list[int] = []

    def rolled_back_once(*args: Any, **kwargs: Any) -> Any:
        tries.append(1)
        if len(tries) == 1:
            raise ChangeRolledBack("the database ended this change; try again")
        return complete(*args, **kwargs)

    monkeypatch.setattr(app.jobs, "complete", rolled_back_once)
    with caplog.at_level(logging.INFO):
        InferenceWorker(ScriptedEngine(DME), app.jobs, app.bus)._run_job(claimed)
    assert len(tries) == 2 and app.jobs.get_job(job.id).state == "done"
    assert "stored again" in caplog.text
    assert "once the database answers" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
