"""The job queue: progress while the model writes, and cancelling."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt, QTimer
from pytestqt.qtbot import QtBot

from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.domain import JobPriority
from ophthai_desktop.core.records import Actor, JobQueue, JobRecord
from ophthai_desktop.core.services.ingest import FolderLayout
from ophthai_desktop.core.services.jobs import JobService
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.ui.controllers.jobs import HELD_LIMIT, NAMES_KEPT, JobsController
from ophthai_desktop.ui.display import local_datetime
from ophthai_desktop.ui.models.job_table import (
    HEADERS,
    MAX_SHOWN,
    JobRow,
    JobTableModel,
    new_job_row,
)
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.views.jobs import JobQueuePanel, short_waiting
from tests.conftest import make_settings
from tests.support.images import png_bytes
from tests.support.scripted_engine import DME, NORMAL, ScriptedEngine
from tests.ui.conftest import Maker, open_patient


def test_cancel_a_running_analysis_from_the_queue(qtbot: QtBot, make_gui: Maker) -> None:
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Held"}, actor=Actor("t", "gui"), image=NewImage(png_bytes())
    )
    open_patient(qtbot, gui, patient.id)
    gui.analysis_view.analyse.click()
    panel, model = gui.jobs_panel, gui.jobs_panel.model
    qtbot.waitUntil(lambda: model.rowCount() == 1)
    job_id = model.row_at(0).job_id  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: model.get(job_id).state == "running")  # type: ignore[union-attr]
    assert _cell(model, job_id, "Progress") in ("starting…", "1 token")  # held at the start
    assert "Analysing" in gui.analysis_view.state.text()

    assert panel.select_job(job_id)
    assert panel.cancel.isEnabled()
    panel.cancel.click()
    qtbot.waitUntil(lambda: model.get(job_id).state == "cancelled")  # type: ignore[union-attr]
    assert app.jobs.get_job(job_id).state == "cancelled"
    assert not panel.cancel.isEnabled()
    qtbot.waitUntil(lambda: "cancelled" in gui.analysis_view.state.text())
    hold.set()


def test_cancel_a_queued_analysis(qtbot: QtBot, make_gui: Maker) -> None:
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    app = gui.application
    actor = Actor("t", "gui")
    first = app.patients.create_patient({"name": "A"}, actor=actor, image=NewImage(png_bytes()))
    second = app.patients.create_patient({"name": "B"}, actor=actor, image=NewImage(png_bytes()))
    running = app.jobs.queue_patient_analysis(first.id, actor=actor)
    waiting = app.jobs.queue_patient_analysis(second.id, actor=actor)
    model, panel = gui.jobs_panel.model, gui.jobs_panel
    qtbot.waitUntil(lambda: model.get(running.id) is not None and model.get(waiting.id) is not None)
    qtbot.waitUntil(lambda: model.get(running.id).state == "running")  # type: ignore[union-attr]
    panel.select_job(waiting.id)
    panel.cancel.click()
    qtbot.waitUntil(lambda: model.get(waiting.id).state == "cancelled")  # type: ignore[union-attr]
    hold.set()
    qtbot.waitUntil(lambda: model.get(running.id).state == "done")  # type: ignore[union-attr]
    assert app.jobs.get_job(waiting.id).state == "cancelled"


def test_deleting_a_patient_takes_their_analyses_off_the_queue(
    qtbot: QtBot, make_gui: Maker
) -> None:
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    app = gui.application
    actor = Actor("t", "gui")
    first = app.patients.create_patient({"name": "A"}, actor=actor, image=NewImage(png_bytes()))
    second = app.patients.create_patient({"name": "B"}, actor=actor, image=NewImage(png_bytes()))
    third = app.patients.create_patient({"name": "C"}, actor=actor, image=NewImage(png_bytes()))
    running = app.jobs.queue_patient_analysis(first.id, actor=actor)
    waiting = app.jobs.queue_patient_analysis(second.id, actor=actor)
    last = app.jobs.queue_patient_analysis(third.id, actor=actor)
    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: all(model.get(job.id) for job in (running, waiting, last)))
    qtbot.waitUntil(lambda: model.get(running.id).state == "running")  # type: ignore[union-attr]

    app.patients.delete_patient(second.id, actor=actor)  # queued
    app.patients.delete_patient(first.id, actor=actor)  # running: the model stops
    qtbot.waitUntil(lambda: model.get(running.id) is None and model.get(waiting.id) is None)
    assert [row.job_id for row in model.records()] == [last.id]
    qtbot.waitUntil(lambda: model.get(last.id).state == "running")  # type: ignore[union-attr]
    hold.set()
    qtbot.waitUntil(lambda: model.get(last.id).state == "done")  # type: ignore[union-attr]


def test_a_selected_job_taken_off_the_queue_leaves_nothing_selected(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Its patient deleted (by a client, say): the job below it was selected instead, and
    Cancel then stopped an analysis the clinician never chose."""
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    app = gui.application
    actor = Actor("t", "gui")
    jobs = []
    for name in ("A", "B", "C"):
        patient = app.patients.create_patient(
            {"name": name}, actor=actor, image=NewImage(png_bytes())
        )
        jobs.append(app.jobs.queue_patient_analysis(patient.id, actor=actor))
    model, panel = gui.jobs_panel.model, gui.jobs_panel
    qtbot.waitUntil(lambda: all(model.get(job.id) for job in jobs))
    qtbot.waitUntil(lambda: model.get(jobs[0].id).state == "running")  # type: ignore[union-attr]
    panel.select_job(jobs[1].id)
    assert panel.selected_job_id() == jobs[1].id and panel.cancel.isEnabled()

    app.patients.delete_patient(jobs[1].patient_id or "", actor=actor)
    qtbot.waitUntil(lambda: model.get(jobs[1].id) is None)
    assert panel.selected_job_id() is None
    assert not panel.cancel.isEnabled()
    hold.set()


def test_an_analysis_the_unload_interrupted_shows_as_queued_again(
    qtbot: QtBot, make_gui: Maker
) -> None:
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Unloaded"}, actor=Actor("t", "gui"), image=NewImage(png_bytes())
    )
    open_patient(qtbot, gui, patient.id)
    job = app.jobs.queue_patient_analysis(patient.id, actor=Actor("t", "gui"))
    model, view = gui.jobs_panel.model, gui.analysis_view
    qtbot.waitUntil(lambda: model.get(job.id) is not None)
    qtbot.waitUntil(lambda: model.get(job.id).state == "running")  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: "Analysing" in view.state.text())

    app.worker.request_unload()

    qtbot.waitUntil(lambda: model.get(job.id).state == "queued")  # type: ignore[union-attr]
    assert app.jobs.get_job(job.id).state == "queued"
    qtbot.waitUntil(lambda: "Queued again" in view.state.text())
    assert "model was unloaded" in view.state.text()
    # (The scripted engine announces no state: the status bar is given it here.)
    gui.status.show_model(app.engine.status())
    assert "unloaded" in gui.window.status.model.text()  # not "loads on first analysis"
    hold.set()

    view.analyse.click()  # resumes the held queue: no advice to cancel it
    qtbot.waitUntil(lambda: "queued and runs next" in view.notice.text())
    assert "cancel it" not in view.notice.text()
    qtbot.waitUntil(lambda: model.get(job.id).state == "done")  # type: ignore[union-attr]
    assert "queued and runs next" not in view.notice.text()  # said of a job since run


def test_analyse_on_a_queued_analysis_says_how_many_run_before_it(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Analyse on a patient whose analysis is queued behind others asked for does not
    promise that it runs next."""
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    app, actor = gui.application, Actor("t", "gui")
    running, first, second = (
        app.patients.create_patient({"name": name}, actor=actor, image=NewImage(png_bytes()))
        for name in ("Running", "First", "Second")
    )
    busy = app.jobs.queue_patient_analysis(running.id, actor=actor)
    qtbot.waitUntil(lambda: app.jobs.get_job(busy.id).state == "running")
    app.jobs.queue_patient_analysis(first.id, actor=actor)
    queued = app.jobs.queue_patient_analysis(second.id, actor=actor)
    view = gui.analysis_view

    open_patient(qtbot, gui, second.id)
    view.analyse.click()

    qtbot.waitUntil(lambda: f"job #{queued.id}" in view.notice.text())
    assert "1 other requested analysis runs before it" in view.notice.text()
    assert "runs next" not in view.notice.text()
    hold.set()


def test_a_start_heard_before_its_queueing_stays_running(qtbot: QtBot, make_gui: Maker) -> None:
    """The worker hears a new job first and may announce its start before the window
    hears it was queued; that is not an analysis queued again."""
    gui = make_gui(engine=ScriptedEngine(DME, hold=threading.Event()))
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Early"}, actor=Actor("t", "gui"), image=NewImage(png_bytes())
    )
    open_patient(qtbot, gui, patient.id)
    model, view = gui.jobs_panel.model, gui.analysis_view
    queued = ev.AnalysisQueued(
        990, patient.id, None, priority=JobPriority.INTERACTIVE, created_at=datetime.now(UTC)
    )
    # Both delivered (the bridge keeps their order), however late: not a fixed wait, after
    # which a queueing not yet heard would leave the row running on any code.
    with qtbot.waitSignal(gui.bridge.event_received, check_params_cb=lambda e: e is queued):
        app.bus.publish(ev.AnalysisStarted(990, patient.id))
        app.bus.publish(queued)
    qtbot.waitUntil(lambda: model.get(990) is not None)
    assert model.get(990).state == "running"  # type: ignore[union-attr]
    assert "Queued again" not in view.state.text()
    assert "Analysing" in view.state.text()


def _cell(model: JobTableModel, job_id: int, header: str, role: Any = None) -> Any:
    position = model.position(job_id)
    if position is None:
        return None
    index = model.index(position, HEADERS.index(header))
    return model.data(index) if role is None else model.data(index, role)


def test_the_queue_shows_the_watch_folder_s_jobs_and_follows_one_moved_ahead(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """The clinician tells the device's analyses (run after every requested one) from
    the requested ones, and sees one move ahead when they press Analyse on its patient;
    a window opened later shows the same from the database."""
    gui = make_gui()  # no model installed: the jobs wait in the queue
    app = gui.application
    layout = FolderLayout.under(app.settings.resolved_watch_folder)
    layout.ensure()
    from_folder = []
    for i in range(2):
        (layout.root / f"device_{i}.png").write_bytes(png_bytes((40 + i, 30)))
        from_folder.append(app.ingest.ingest_file(layout.root / f"device_{i}.png", layout))
    first, second = (result.job_id or 0 for result in from_folder)
    actor = Actor("t", "gui")
    patient = app.patients.create_patient({"name": "A"}, actor=actor, image=NewImage(png_bytes()))
    asked = app.jobs.queue_patient_analysis(patient.id, actor=actor).id
    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: all(model.get(job) for job in (first, second, asked)))

    assert [_cell(model, job, "Priority") for job in (first, second, asked)] == [
        "Watch folder",
        "Watch folder",
        "Requested",
    ]
    tip = _cell(model, first, "Priority", Qt.ItemDataRole.ToolTipRole)
    assert "runs after every analysis someone asked for" in tip

    open_patient(qtbot, gui, from_folder[1].patient_id or "")
    gui.analysis_view.analyse.click()
    qtbot.waitUntil(lambda: _cell(model, second, "Priority") == "Requested")
    assert "runs before the watch folder" in _cell(
        model, second, "Priority", Qt.ItemDataRole.ToolTipRole
    )
    assert _cell(model, first, "Priority") == "Watch folder"
    assert app.jobs.get_job(second).priority == JobPriority.INTERACTIVE

    later = make_gui(application=app).jobs_panel.model  # read from the database
    qtbot.waitUntil(lambda: all(later.get(job) for job in (first, second, asked)))
    assert [_cell(later, job, "Priority") for job in (first, second, asked)] == [
        "Watch folder",
        "Requested",
        "Requested",
    ]


def test_a_job_s_priority_heard_out_of_order_shows_the_highest(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Events of one job can arrive out of order: a start (which does not say the
    priority) before the queueing, or a move ahead before the queueing that announced
    it as the watch folder's (published meanwhile). A priority only rises."""
    gui = make_gui()
    app = gui.application
    model = gui.jobs_panel.model
    background = JobPriority.BACKGROUND
    app.bus.publish(ev.AnalysisStarted(990, None))
    app.bus.publish(ev.AnalysisPrioritised(991, None, None, JobPriority.INTERACTIVE))
    qtbot.waitUntil(lambda: model.get(990) is not None and model.get(991) is not None)
    assert _cell(model, 990, "Priority") == ""  # not known yet
    assert _cell(model, 991, "Priority") == "Requested"

    now = datetime.now(UTC)
    app.bus.publish(ev.AnalysisQueued(990, None, None, priority=background, created_at=now))
    app.bus.publish(ev.AnalysisQueued(991, None, None, priority=background, created_at=now))
    qtbot.waitUntil(lambda: _cell(model, 990, "Priority") == "Watch folder")
    assert model.get(990).state == "running"  # type: ignore[union-attr]
    assert _cell(model, 991, "Priority") == "Requested"


def test_a_job_heard_of_by_its_queueing_shows_when_it_was_queued(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """A job put back in the queue (the model unloaded under it), queued a day ago,
    shows that time and its place among the watch folder's jobs (the oldest runs first),
    not the time the window heard of it."""
    gui = make_gui()
    app = gui.application
    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: not gui.jobs.loading)
    background = JobPriority.BACKGROUND
    now = datetime.now(UTC)
    yesterday = now - timedelta(days=1)
    app.bus.publish(ev.AnalysisQueued(991, None, None, priority=background, created_at=now))
    app.bus.publish(
        ev.AnalysisQueued(990, None, None, True, priority=background, created_at=yesterday)
    )
    qtbot.waitUntil(lambda: model.get(990) is not None and model.get(991) is not None)

    assert _cell(model, 990, "Queued") == local_datetime(yesterday)
    assert _cell(model, 991, "Queued") == local_datetime(now)
    assert model.position(990) < model.position(991)  # type: ignore[operator]


def test_the_queue_names_the_patients(qtbot: QtBot, make_gui: Maker) -> None:
    first = make_gui()  # no model installed: the jobs wait in the queue
    app = first.application
    actor = Actor("t", "gui")
    earlier = app.patients.create_patient(
        {"name": "Ada Earlier"}, actor=actor, image=NewImage(png_bytes())
    )
    old_job = app.jobs.queue_patient_analysis(earlier.id, actor=actor)
    gui = make_gui(application=app)  # a window opened with a job already queued
    model = gui.jobs_panel.model
    column = HEADERS.index("Patient")

    def shown(job_id: int) -> str | None:
        position = model.position(job_id)
        return None if position is None else model.data(model.index(position, column))

    qtbot.waitUntil(lambda: shown(old_job.id) == "Ada Earlier")
    later = app.patients.create_patient(
        {"name": "Ben Later"}, actor=actor, image=NewImage(png_bytes())
    )
    new_job = app.jobs.queue_patient_analysis(later.id, actor=actor)
    qtbot.waitUntil(lambda: shown(new_job.id) == "Ben Later")
    app.patients.update_patient(later.id, {"name": "Ben Renamed"}, actor=actor)
    qtbot.waitUntil(lambda: shown(new_job.id) == "Ben Renamed")


def _idle(gui: Any) -> bool:
    """No task out, and the queue's rows read all listed."""
    return not gui.tasks.busy and not gui.jobs.loading


def _progress(model: JobTableModel, job_id: int) -> str | None:
    position = model.position(job_id)
    column = HEADERS.index("Progress")
    return None if position is None else model.data(model.index(position, column))


def _queued_app(tmp_path: Path, name: str) -> tuple[Any, Any, Any]:
    """An application (no window yet) with one patient whose analysis is queued."""
    app = build_application(
        make_settings(tmp_path / "queue", api_enabled=False, model_path=tmp_path / "none")
    )
    actor = Actor("t", "gui")
    patient = app.patients.create_patient({"name": name}, actor=actor, image=NewImage(png_bytes()))
    return app, patient, app.jobs.queue_patient_analysis(patient.id, actor=actor)


@pytest.mark.parametrize("read", ["before the job ran", "after the job ran"])
def test_a_job_that_runs_while_the_queue_loads_shows_as_finished_with_its_count(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    """The order seen at start-up with analyses already queued: the queue's first load
    is read on a pool thread, and the worker runs a job meanwhile, so the job's start,
    tokens and end reach the window before the load does. The load was read before
    the job ran (it says queued) or after (it says done)."""
    app, _patient, job = _queued_app(tmp_path, "Early Bird")
    release, reading = threading.Event(), threading.Event()
    list_queue = app.jobs.list_queue

    def held_list_queue(**kwargs: Any) -> Any:
        queue = list_queue(**kwargs) if read == "before the job ran" else None
        reading.set()
        release.wait(10)
        return queue or list_queue(**kwargs)

    monkeypatch.setattr(app.jobs, "list_queue", held_list_queue)
    model_loads = threading.Event()  # the job runs once the model has loaded
    engine = ScriptedEngine(DME, state="installed", load_hold=model_loads)
    gui = make_gui(application=app, engine=engine)
    heard: list[int] = []
    gui.bridge.analysis_finished.connect(lambda job_id, *_: heard.append(job_id))
    qtbot.waitUntil(reading.is_set)
    model_loads.set()
    qtbot.waitUntil(lambda: heard == [job.id])  # delivered to the window
    release.set()  # the load arrives after the job's events
    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: _idle(gui) and model.get(job.id) is not None)

    tokens = app.jobs.outcome(job.id).analysis.completion_tokens  # type: ignore[union-attr]
    assert tokens
    assert model.get(job.id).state == "done"  # type: ignore[union-attr]
    assert _progress(model, job.id) == f"{tokens} tokens"


def test_a_job_read_both_queued_and_finished_by_the_queues_load_is_listed_once(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window's second line of defence: the load's queries were not one snapshot
    (now they are, ``JobService.list_queue``), and a job that ended between the read of
    the open jobs and that of the finished ones was in both. Its second row took the first's
    place past the list's end, which Qt refused: the job's row vanished from the queue
    and every later event of the job raised in its slot (found in the window at start,
    with an analysis queued again by the restart)."""
    app, _patient, job = _queued_app(tmp_path, "Torn Read")
    release, reading = threading.Event(), threading.Event()
    list_queue = app.jobs.list_queue

    def torn_list_queue(**kwargs: Any) -> JobQueue:
        before = list_queue(**kwargs)  # the open jobs: the job still queued
        reading.set()
        release.wait(10)
        after = list_queue(**kwargs)  # the finished ones: the job done
        return JobQueue(open=before.open, more_open=before.more_open, finished=after.finished)

    monkeypatch.setattr(app.jobs, "list_queue", torn_list_queue)
    model_loads = threading.Event()
    engine = ScriptedEngine(DME, state="installed", load_hold=model_loads)
    gui = make_gui(application=app, engine=engine)
    heard: list[int] = []
    gui.bridge.analysis_finished.connect(lambda job_id, *_: heard.append(job_id))
    qtbot.waitUntil(reading.is_set)
    model_loads.set()
    qtbot.waitUntil(lambda: heard == [job.id])
    release.set()
    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: _idle(gui))

    assert _shown(model) == [job.id]
    tokens = app.jobs.outcome(job.id).analysis.completion_tokens  # type: ignore[union-attr]
    assert model.get(job.id).state == "done"  # type: ignore[union-attr]
    assert _progress(model, job.id) == f"{tokens} tokens"


def test_a_job_finished_before_the_window_opened_shows_its_token_count(
    qtbot: QtBot, make_gui: Maker
) -> None:
    first = make_gui(engine=ScriptedEngine(DME))
    app = first.application
    actor = Actor("t", "gui")
    patient = app.patients.create_patient(
        {"name": "Yesterday"}, actor=actor, image=NewImage(png_bytes())
    )
    job = app.jobs.queue_patient_analysis(patient.id, actor=actor)
    qtbot.waitUntil(lambda: app.jobs.get_job(job.id).state == "done")

    gui = make_gui(application=app)  # as after a restart: the job is only in the database
    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: model.get(job.id) is not None)
    tokens = app.jobs.outcome(job.id).analysis.completion_tokens  # type: ignore[union-attr]
    assert _progress(model, job.id) == f"{tokens} tokens"


def test_a_patient_renamed_while_the_queue_loads_keeps_the_new_name(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The load read the names before the rename and put the old one back over the
    name the rename's event had given (found by review)."""
    app, patient, job = _queued_app(tmp_path, "Old Name")
    actor = Actor("t", "gui")
    release, reading = threading.Event(), threading.Event()
    tokens_of = app.jobs.completion_tokens_of

    def held_tokens_of(ids: Any) -> Any:  # read after the names
        reading.set()
        release.wait(10)
        return tokens_of(ids)

    monkeypatch.setattr(app.jobs, "completion_tokens_of", held_tokens_of)
    gui = make_gui(application=app)
    qtbot.waitUntil(reading.is_set)
    heard: list[str] = []
    gui.bridge.patient_updated.connect(lambda record: heard.append(record.name))
    app.patients.update_patient(patient.id, {"name": "New Name"}, actor=actor)
    qtbot.waitUntil(lambda: heard == ["New Name"])  # the window has heard of it
    release.set()
    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: _idle(gui) and model.get(job.id) is not None)

    column = HEADERS.index("Patient")
    assert model.data(model.index(model.position(job.id), column)) == "New Name"


def _queue_read_refused_at_start(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> tuple[GuiSession, JobRecord, threading.Event]:
    """A window whose job queue cannot be read (read again every 200 ms) while the
    returned event is set; its banner says so. The window, its queued job, the event."""
    from ophthai_desktop.core.errors import StorageError
    from ophthai_desktop.ui.controllers import jobs as jobs_controller

    app, _patient, job = _queued_app(tmp_path, "Waiting")
    list_queue = app.jobs.list_queue
    locked = threading.Event()
    locked.set()

    def sometimes_locked(**kwargs: Any) -> Any:
        if locked.is_set():
            raise StorageError("the database is locked")
        return list_queue(**kwargs)

    monkeypatch.setattr(app.jobs, "list_queue", sometimes_locked)
    monkeypatch.setattr(jobs_controller, "RELOAD_AFTER_MS", 200)
    gui = make_gui(application=app)
    qtbot.waitUntil(lambda: "job queue could not be read" in gui.window.banner.text())
    return gui, job, locked


def test_a_queue_that_cannot_be_read_says_so_and_is_read_again(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed first read only went to the log: the panel stayed empty for the whole
    session, as if nothing were queued (found by review)."""
    gui, job, locked = _queue_read_refused_at_start(qtbot, tmp_path, make_gui, monkeypatch)
    assert gui.jobs_panel.model.get(job.id) is None
    locked.clear()  # the lock is gone: the next read fills the queue

    qtbot.waitUntil(lambda: gui.jobs_panel.model.get(job.id) is not None, timeout=5000)
    assert gui.jobs_panel.model.get(job.id).state == "queued"  # type: ignore[union-attr]
    # Read again: "trying again" is no longer true (it stayed until closed by hand).
    assert "job queue could not be read" not in gui.window.banner.text()


def test_a_queue_read_failure_closed_by_the_clinician_stays_closed_while_it_lasts(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The banner came back at every try (every 5 s) after the clinician closed it."""
    gui, job, locked = _queue_read_refused_at_start(qtbot, tmp_path, make_gui, monkeypatch)
    tries = []
    list_queue = gui.application.jobs.list_queue
    monkeypatch.setattr(
        gui.application.jobs, "list_queue", lambda **kw: (tries.append(1), list_queue(**kw))[1]
    )
    gui.window.banner.dismiss()  # as its close button does
    qtbot.waitUntil(lambda: len(tries) >= 3, timeout=5000)  # tried again, and failed
    assert "job queue could not be read" not in gui.window.banner.text()
    locked.clear()
    qtbot.waitUntil(lambda: gui.jobs_panel.model.get(job.id) is not None, timeout=5000)


def test_a_queue_read_failure_is_logged_without_the_errors_text(
    qtbot: QtBot,
    tmp_path: Path,
    make_gui: Maker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An error's text can quote a row's values (a patient's name): the log gets its kind
    and place, as for every failed background task; the clinician reads the text."""
    app, _patient, _job = _queued_app(tmp_path, "Waiting")

    def failing(**kwargs: Any) -> Any:
        raise ValueError("could not read the row of Zorblax Quimby")

    monkeypatch.setattr(app.jobs, "list_queue", failing)
    gui = make_gui(application=app)
    qtbot.waitUntil(lambda: "job queue could not be read" in gui.window.banner.text())

    assert "Zorblax" in gui.window.banner.text()
    assert "job queue could not be read" in caplog.text
    assert "ValueError" in caplog.text
    assert "Zorblax" not in caplog.text


def _one_queued_job(qtbot: QtBot, make_gui: Maker) -> tuple[GuiSession, JobRecord]:
    """A window (no model: the analysis stays queued) listing one queued job."""
    gui = make_gui()
    actor = Actor("t", "gui")
    app = gui.application
    patient = app.patients.create_patient({"name": "A"}, actor=actor, image=NewImage(png_bytes()))
    job = app.jobs.queue_patient_analysis(patient.id, actor=actor)
    qtbot.waitUntil(lambda: gui.jobs_panel.model.get(job.id) is not None)
    return gui, job


def test_a_cancel_that_fails_leaves_the_job_as_it_was(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The job goes on when its cancel cannot be recorded: its row said "cancelling…"
    for good, as if it were about to stop."""
    from ophthai_desktop.core.errors import StorageError

    gui, job = _one_queued_job(qtbot, make_gui)
    app, model, panel = gui.application, gui.jobs_panel.model, gui.jobs_panel

    def locked(*_args: object, **_kwargs: object) -> None:
        raise StorageError("the database is locked")

    monkeypatch.setattr(app.jobs, "request_cancel", locked)
    panel.select_job(job.id)
    panel.cancel.click()

    qtbot.waitUntil(lambda: "the database is locked" in gui.window.banner.text())
    row = model.get(job.id)
    assert row is not None and row.state == "queued" and row.note == ""
    assert panel.cancel.isEnabled()  # to try again


def test_events_heard_while_the_queue_loads_are_kept_few_and_all_count(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the queue's first read is out (a database held up), every event heard was
    kept for after it, one per batch of tokens, also those of jobs the queue never shows:
    a job streaming for an hour kept ~72,000. A job's batches now add up in one entry, and
    past HELD_LIMIT entries they are dropped for a second read of the queue."""
    app, _patient, job = _queued_app(tmp_path, "Slow Read")
    release, reading = threading.Event(), threading.Event()
    reads: list[int] = []
    list_queue = app.jobs.list_queue

    def held_list_queue(**kwargs: Any) -> Any:
        reads.append(1)
        reading.set()
        release.wait(10)
        return list_queue(**kwargs)

    monkeypatch.setattr(app.jobs, "list_queue", held_list_queue)
    gui = make_gui(application=app)
    qtbot.waitUntil(reading.is_set)
    bridge, model = gui.bridge, gui.jobs_panel.model
    bridge.analysis_started.emit(job.id, job.patient_id)
    for _ in range(3000):
        bridge.analysis_progressed.emit(job.id, "reasoning", "x", 1)
        bridge.analysis_progressed.emit(999_999, "reasoning", "x", 2)  # never in the queue
    assert gui.jobs.held_events <= 3
    release.set()
    qtbot.waitUntil(lambda: model.get(job.id) is not None and _idle(gui))
    assert model.get(job.id).state == "running"  # type: ignore[union-attr]
    assert _progress(model, job.id) == "3000 tokens"  # no batch lost
    assert model.get(999_999) is None and reads == [1]

    reading.clear()
    release.clear()
    gui.jobs._load()  # as after a failed read: events are held again meanwhile
    qtbot.waitUntil(reading.is_set)
    for other in range(1, HELD_LIMIT + 500):  # jobs that never appear
        bridge.analysis_cancelled.emit(1_000_000 + other, None)
    assert gui.jobs.held_events <= HELD_LIMIT
    release.set()  # that read may predate what was dropped: the queue is read again
    qtbot.waitUntil(lambda: len(reads) == 3 and _idle(gui))
    assert model.get(job.id).state == "queued"  # type: ignore[union-attr]  # as stored


def _publish_on_a_thread(app: Any, waiting: str | None) -> None:
    """Publish why the queue waits from a thread of its own, as the worker does."""
    thread = threading.Thread(target=app.bus.publish, args=(ev.QueueWaitingChanged(waiting),))
    thread.start()
    thread.join()


#: Shown the moment it changes: sooner than the old poll's 1 s, with room for a loaded
#: machine (500 ms was tight there).
SOON_MS = 900


def test_why_the_queue_waits_shows_the_moment_it_changes(qtbot: QtBot, make_gui: Maker) -> None:
    """The panel read the worker's reason once a second, and a timer ran every second
    for it all session long; it now follows the worker's ``queue_waiting`` event."""
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    app = gui.application
    actor = Actor("t", "gui")
    first = app.patients.create_patient({"name": "A"}, actor=actor, image=NewImage(png_bytes()))
    second = app.patients.create_patient({"name": "B"}, actor=actor, image=NewImage(png_bytes()))
    running = app.jobs.queue_patient_analysis(first.id, actor=actor)
    queued = app.jobs.queue_patient_analysis(second.id, actor=actor)
    model, panel = gui.jobs_panel.model, gui.jobs_panel
    qtbot.waitUntil(lambda: model.get(running.id) is not None and model.get(queued.id) is not None)
    qtbot.waitUntil(lambda: model.get(running.id).state == "running")  # type: ignore[union-attr]
    assert panel.waiting.text() == ""
    repeating = [t for t in gui.jobs.findChildren(QTimer) if t.isActive() and not t.isSingleShot()]
    assert repeating == []  # nothing runs every second while the queue is idle

    _publish_on_a_thread(app, "the model is being checked")
    qtbot.waitUntil(lambda: "the model is being checked" in panel.waiting.text(), timeout=SOON_MS)
    assert panel.waiting.text() == "Queued analyses are waiting: the model is being checked"
    _publish_on_a_thread(app, None)  # the worker takes jobs again
    qtbot.waitUntil(lambda: panel.waiting.text() == "", timeout=SOON_MS)

    _publish_on_a_thread(app, "the model is being checked")
    qtbot.waitUntil(lambda: panel.waiting.text() != "", timeout=SOON_MS)
    panel.select_job(queued.id)
    panel.cancel.click()  # nothing queued is shown: nothing is said to wait
    qtbot.waitUntil(lambda: model.get(queued.id).state == "cancelled")  # type: ignore[union-attr]
    assert panel.waiting.text() == ""
    hold.set()
    qtbot.waitUntil(lambda: model.get(running.id).state == "done")  # type: ignore[union-attr]


def test_the_worker_s_reason_shows_while_the_model_loads_and_clears_after(
    qtbot: QtBot, make_gui: Maker
) -> None:
    loads = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, state="installed", load_hold=loads))
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "First Use"}, actor=Actor("t", "gui"), image=NewImage(png_bytes())
    )
    job = app.jobs.queue_patient_analysis(patient.id, actor=Actor("t", "gui"))
    panel, model = gui.jobs_panel, gui.jobs_panel.model
    qtbot.waitUntil(lambda: "model loading" in panel.waiting.text())
    loads.set()
    qtbot.waitUntil(lambda: model.get(job.id).state == "done")  # type: ignore[union-attr]
    assert panel.waiting.text() == ""


def test_a_window_opened_while_the_queue_waits_says_why(qtbot: QtBot, make_gui: Maker) -> None:
    """The reason was published before this window listened: it is read at the start."""
    first = make_gui()  # no model installed: the job waits
    app = first.application
    patient = app.patients.create_patient(
        {"name": "Waits"}, actor=Actor("t", "gui"), image=NewImage(png_bytes())
    )
    job = app.jobs.queue_patient_analysis(patient.id, actor=Actor("t", "gui"))
    qtbot.waitUntil(lambda: "not installed" in first.jobs_panel.waiting.text())

    gui = make_gui(application=app)
    qtbot.waitUntil(lambda: gui.jobs_panel.model.get(job.id) is not None)
    assert "Queued analyses are waiting: the model is not installed" in (
        gui.jobs_panel.waiting.text()
    )


def test_a_long_session_keeps_every_open_job_and_only_the_newest_finished_ones(
    qtbot: QtBot,
) -> None:
    """A day of watch-folder files: the queue's rows stop growing at MAX_SHOWN, dropping
    the oldest finished jobs, never a queued or running one; names still reach the rows
    of the patient named."""
    model = JobTableModel()
    model.upsert(new_job_row(1, "pt-old-queued"))
    model.upsert(new_job_row(2, "pt-old-running"))
    model.update(2, state="running")
    for job_id in range(3, MAX_SHOWN + 103):
        model.upsert(replace(new_job_row(job_id, f"pt-{job_id}"), state="done"))

    assert model.rowCount() == MAX_SHOWN
    kept = {row.job_id for row in model.records()}
    assert {1, 2} <= kept
    assert min(kept - {1, 2}) == MAX_SHOWN + 103 - (MAX_SHOWN - 2)  # the newest finished
    assert _shown(model)[:3] == [2, 1, MAX_SHOWN + 102]  # running, queued, the last ended
    assert sorted(model.open_job_ids()) == [1, 2]
    model.name_patient("pt-old-queued", "Ada Lovelace")
    assert model.get(1).patient_name == "Ada Lovelace"


def _backlog(
    app: Any, job: JobRecord, count: int, ago: timedelta = timedelta(days=1)
) -> tuple[list[int], datetime]:
    """``count`` watch-folder analyses of ``job``'s scan queued a day (``ago``) ago, a
    second apart and oldest first, as a restart finds a device's backlog; and when the
    first was."""
    since = datetime.now(UTC) - ago
    with app.db.session() as session:
        rows = [
            m.Job(
                **JobService.queued_values(
                    patient_id=job.patient_id,
                    scan_id=job.scan_id,
                    sha256=job.image_sha256,
                    question=None,
                    actor=Actor.system("watch-folder"),
                    priority=JobPriority.BACKGROUND,
                    now=since + timedelta(seconds=i),
                )
            )
            for i in range(count)
        ]
        session.add_all(rows)
        session.flush()
        return [row.id for row in rows], since


def test_the_first_load_lists_what_runs_next_behind_a_backlog(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker
) -> None:
    """After a restart with 450 watch-folder files queued, the first load read the 100
    newest jobs: the oldest queued ones, which run next, were missing until they started
    and then showed the time they started as their queued time (found by review). Every
    open job is listed now, with when it was queued, and the finished ones below it."""
    app, _patient, asked = _queued_app(tmp_path, "Backlog")
    app.jobs.request_cancel(asked.id, actor=Actor("t", "gui"))  # a finished job
    backlog, since = _backlog(app, asked, 450)
    requested = app.jobs.queue_patient_analysis(  # another question: another analysis
        asked.patient_id, actor=Actor("t", "gui"), question="Any drusen?"
    )
    gui = make_gui(application=app)  # the model is not installed: nothing runs
    model, panel = gui.jobs_panel.model, gui.jobs_panel
    qtbot.waitUntil(lambda: model.get(requested.id) is not None and _idle(gui))

    assert sorted(model.open_job_ids()) == sorted([*backlog, requested.id])
    assert _cell(model, backlog[0], "Queued") == local_datetime(since)  # runs next
    assert _cell(model, backlog[0], "Priority") == "Watch folder"
    assert model.get(asked.id).state == "cancelled"  # type: ignore[union-attr]
    assert model.rowCount() == 452
    # In the order they run (the one asked for first, then the backlog oldest first),
    # then the finished one: newest first put the backlog's next job 451 rows down.
    assert _shown(model) == [requested.id, *backlog, asked.id]
    assert panel.unlisted.text() == "" and panel.unlisted.isHidden()


def test_open_jobs_past_the_panel_s_rows_are_counted_and_listed_as_they_start(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker
) -> None:
    """More open jobs than the panel shows: those that run first are listed, and the
    panel says how many more there are rather than leaving them out silently. One of
    those starting or moved ahead is listed with when it was queued (a job heard of by
    its move ahead had an empty queued time, one by its start the time it started), the
    listed queued job that runs last making room (each put the list a row over 500)."""
    app, patient, requested = _queued_app(tmp_path, "Big Backlog")
    backlog, since = _backlog(app, requested, MAX_SHOWN + 10)
    gui = make_gui(application=app)
    model, panel = gui.jobs_panel.model, gui.jobs_panel
    qtbot.waitUntil(lambda: model.get(requested.id) is not None and _idle(gui))

    listed = set(model.open_job_ids())
    assert listed == {requested.id, *backlog[: MAX_SHOWN - 1]}
    assert panel.unlisted.text() == (
        "Showing 500 of 511 queued and running analyses, those that run first; "
        "the other 11 are listed as their turn comes."
    )
    assert not panel.unlisted.isHidden()

    last, before_last, third_last = backlog[-1], backlog[-2], backlog[-3]
    app.bus.publish(ev.AnalysisStarted(last, patient.id))
    qtbot.waitUntil(lambda: _cell(model, last, "Queued") not in (None, ""))
    assert _cell(model, last, "Queued") == local_datetime(since + timedelta(seconds=MAX_SHOWN + 9))
    assert model.get(last).state == "running"  # type: ignore[union-attr]
    assert _cell(model, last, "Priority") == "Watch folder"  # read with its time
    assert len(model.open_job_ids()) == MAX_SHOWN
    assert model.get(backlog[MAX_SHOWN - 2]) is None  # it ran last of those listed
    assert "Showing 500 of 511" in panel.unlisted.text() and "other 11 " in panel.unlisted.text()

    app.bus.publish(ev.AnalysisPrioritised(third_last, patient.id, None, JobPriority.INTERACTIVE))
    qtbot.waitUntil(lambda: _cell(model, third_last, "Queued") not in (None, ""))
    assert _cell(model, third_last, "Queued") == local_datetime(
        since + timedelta(seconds=MAX_SHOWN + 7)
    )
    assert _cell(model, third_last, "Priority") == "Requested"  # the event's, not the read's
    assert len(model.open_job_ids()) == MAX_SHOWN
    assert "Showing 500 of 511" in panel.unlisted.text() and "other 11 " in panel.unlisted.text()
    app.jobs.request_cancel(before_last, actor=Actor("t", "gui"))  # by a client: gone
    qtbot.waitUntil(lambda: "other 10 " in panel.unlisted.text())
    assert model.get(before_last) is None

    app.patients.delete_patient(patient.id, actor=Actor("t", "gui"))  # every job goes
    qtbot.waitUntil(lambda: model.rowCount() == 0)
    assert panel.unlisted.text() == "" and panel.unlisted.isHidden()


def _queue_of_six(
    qtbot: QtBot, make_gui: Maker, app: Any, requested: JobRecord
) -> tuple[GuiSession, JobQueuePanel, JobTableModel]:
    """The window on ``app`` (the model not installed: nothing runs), and a job queue
    panel of its own that lists 6 open jobs (500 in the window), read and shown."""
    gui = make_gui(application=app)
    qtbot.waitUntil(lambda: gui.jobs_panel.model.get(requested.id) is not None)
    panel = JobQueuePanel(JobTableModel())
    qtbot.addWidget(panel)
    JobsController(gui.context, gui.window, panel, gui.patients, limit=6).start()
    model = panel.model
    qtbot.waitUntil(lambda: model.rowCount() == 6 and _idle(gui))
    return gui, panel, model


def test_the_queue_is_read_again_when_its_listed_queued_jobs_run_down(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker
) -> None:
    """After a restart with more open jobs than the panel lists, those past the list
    showed one at a time as they started: the queue was never read again when its listed
    queued jobs ran out, so the notice stayed and the clinician did not see what ran next
    (found by review). Once few are left the next ones are read, in their order, with
    their queued time; the selection and the notice stay true. (The read's limit, 500 in
    the window, is lowered here.)"""
    app, _patient, requested = _queued_app(tmp_path, "Long Backlog")
    backlog, since = _backlog(app, requested, 14)
    gui, panel, model = _queue_of_six(qtbot, make_gui, app, requested)  # nothing runs
    assert _shown(model) == [requested.id, *backlog[:5]]
    assert "Showing 6 of 15 " in panel.unlisted.text()
    assert panel.select_job(backlog[4])

    actor = Actor("t", "gui")
    app.jobs.request_cancel(requested.id, actor=actor)
    for job_id in backlog[:3]:  # a clinician cancels; the worker would take them alike
        app.jobs.request_cancel(job_id, actor=actor)
    # Two queued left (of a limit of 6, it reads again below 3): the next four are listed
    # before they start, queued, with when they were queued.
    qtbot.waitUntil(lambda: model.get(backlog[5]) is not None)
    qtbot.waitUntil(lambda: _idle(gui))
    assert sorted(model.open_job_ids()) == backlog[3:9]
    assert _shown(model)[:6] == backlog[3:9]
    assert model.get(backlog[8]).state == "queued"  # type: ignore[union-attr]
    assert _cell(model, backlog[8], "Queued") == local_datetime(since + timedelta(seconds=8))
    assert _cell(model, backlog[8], "Patient") == "Long Backlog"
    assert panel.selected_job_id() == backlog[4]
    assert panel.unlisted.text() == (
        "Showing 6 of 11 queued and running analyses, those that run first; "
        "the other 5 are listed as their turn comes."
    )

    for job_id in backlog[3:]:
        app.jobs.request_cancel(job_id, actor=actor)
    qtbot.waitUntil(lambda: model.open_job_ids() == [] and _idle(gui))
    assert panel.unlisted.isHidden()


def test_jobs_queued_behind_unlisted_ones_are_counted_and_listed_in_their_turn(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker
) -> None:
    """Watch-folder jobs queued while older ones are not listed run after those: they
    are counted with them, not listed (listing them put jobs that run later under
    "those that run first", and grew the list by a row a file while the model was
    missing). An analysis someone asks for runs before the watch folder's: it is
    listed, the listed job that runs last making room. Once the listed ones run down,
    the next are read and listed in the order they run: the older ones first."""
    app, patient, requested = _queued_app(tmp_path, "Overtaken")
    backlog, _since = _backlog(app, requested, 8)
    gui, panel, model = _queue_of_six(qtbot, make_gui, app, requested)
    assert "the other 3 " in panel.unlisted.text()
    later, at = _backlog(app, requested, 3, timedelta(0))  # queued now
    for i, job_id in enumerate(later):
        app.bus.publish(
            ev.AnalysisQueued(
                job_id,
                patient.id,
                None,
                priority=JobPriority.BACKGROUND,
                created_at=at + timedelta(seconds=i),
            )
        )
    qtbot.waitUntil(lambda: "Showing 6 of 12 " in panel.unlisted.text())
    assert not any(model.get(job_id) for job_id in later)
    asked = app.jobs.queue_patient_analysis(  # another question: another analysis
        patient.id, actor=Actor("t", "gui"), question="Any drusen?"
    )
    qtbot.waitUntil(lambda: model.get(asked.id) is not None)
    assert _shown(model) == [requested.id, asked.id, *backlog[:4]]
    assert panel.unlisted.text() == (
        "Showing 6 of 13 queued and running analyses, those that run first; "
        "the other 7 are listed as their turn comes."
    )

    for job_id in [requested.id, asked.id, *backlog[:4]]:
        app.jobs.request_cancel(job_id, actor=Actor("t", "gui"))
    # Six cancels, each read again by the window: seconds on a loaded machine.
    qtbot.waitUntil(lambda: model.get(later[0]) is not None, timeout=20_000)
    qtbot.waitUntil(lambda: _idle(gui) and model.queued_count() >= 5, timeout=20_000)
    # Six listed, or five where the read reached the window before the last cancel's
    # event (its row, already gone from the database, was counted among the six, and
    # five are over the point where the queue is read again): the first ones of the
    # queue either way, in the order they run, and the notice counts the rest.
    listed = model.queued_count()
    runs_next = [*backlog[4:], *later]
    assert _shown(model)[:listed] == runs_next[:listed]
    assert f"Showing {listed} of 7 " in panel.unlisted.text()

    started = app.jobs.claim_next()  # what the worker takes next: the first listed
    assert started is not None and started.id == backlog[4]
    app.bus.publish(ev.AnalysisStarted(started.id, patient.id))
    qtbot.waitUntil(lambda: model.get(backlog[4]).state == "running")  # type: ignore[union-attr]
    assert _shown(model)[:listed] == runs_next[:listed]


def test_the_selected_job_stays_listed_when_an_analysis_asked_for_makes_room(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker
) -> None:
    """The list full, an analysis someone asks for is listed and the listed job that
    runs last goes unlisted to make room: when the clinician had that one selected (to
    cancel it), it vanished with the selection, and Cancel with it. It stays, selected,
    the list one over its limit until the selection moves."""
    app, patient, requested = _queued_app(tmp_path, "Chosen Last")
    backlog, _since = _backlog(app, requested, 8)
    _gui, panel, model = _queue_of_six(qtbot, make_gui, app, requested)
    assert _shown(model) == [requested.id, *backlog[:5]]
    assert panel.select_job(backlog[4])  # the listed job that runs last

    asked = app.jobs.queue_patient_analysis(
        patient.id, actor=Actor("t", "gui"), question="Any drusen?"
    )
    qtbot.waitUntil(lambda: model.get(asked.id) is not None)

    assert panel.selected_job_id() == backlog[4]
    assert panel.cancel.isEnabled()
    assert _shown(model) == [requested.id, asked.id, *backlog[:5]]
    assert "Showing 7 of 10 " in panel.unlisted.text()


def _run_on_a_thread(app: Any, count: int) -> None:
    """Run the next ``count`` queued jobs from a thread of its own, as the worker takes
    them (the model's answer stood in for): each starts, then is stored done."""
    result = ScriptedEngine(NORMAL)._result(cancelled=False)

    def run() -> None:
        for _ in range(count):
            job = app.jobs.claim_next()
            assert job is not None
            app.bus.publish(ev.AnalysisStarted(job.id, job.patient_id))
            app.jobs.complete(job, result)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()


def test_a_backlog_queued_while_the_model_is_missing_is_listed_up_to_the_panel_s_rows(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker
) -> None:
    """A watch folder fed for days with no model installed: every queued job was
    listed, a row each (1.2 MB of memory per 1,000 files, without end). The panel lists
    the MAX_SHOWN that run first and says how many wait in all; an analysis asked for
    last runs first and is listed; as the worker runs the listed ones, the next are
    listed in the order they run."""
    app, patient, first = _queued_app(tmp_path, "Watched")
    app.jobs.request_cancel(first.id, actor=Actor("t", "gui"))
    gui = make_gui(application=app)  # the model is not installed: nothing runs
    model, panel = gui.jobs_panel.model, gui.jobs_panel
    qtbot.waitUntil(lambda: model.get(first.id) is not None and _idle(gui))

    backlog = []
    for _ in range(1499):  # as the watch folder queues them, one by one
        [job_id], now = _backlog(app, first, 1, timedelta(0))
        app.bus.publish(
            ev.AnalysisQueued(
                job_id, patient.id, None, priority=JobPriority.BACKGROUND, created_at=now
            )
        )
        backlog.append(job_id)
    asked = app.jobs.queue_patient_analysis(
        patient.id, actor=Actor("t", "gui"), question="Any drusen?"
    )
    qtbot.waitUntil(lambda: model.get(asked.id) is not None)

    assert model.rowCount() <= MAX_SHOWN
    assert sorted(model.open_job_ids()) == sorted([asked.id, *backlog[: MAX_SHOWN - 1]])
    assert _shown(model)[:3] == [asked.id, backlog[0], backlog[1]]  # in the order they run
    assert _cell(model, asked.id, "Patient") == "Watched"
    assert panel.unlisted.text() == (
        "Showing 500 of 1,500 queued and running analyses, those that run first; "
        "the other 1,000 are listed as their turn comes."
    )
    assert "Queued analyses are waiting: the model is not installed" in panel.waiting.text()
    assert panel.select_job(backlog[0])  # a listed job can be cancelled
    panel.cancel.click()
    qtbot.waitUntil(lambda: model.get(backlog[0]).state == "cancelled")  # type: ignore[union-attr]
    assert "of 1,499 " in panel.unlisted.text()

    _run_on_a_thread(app, 1 + MAX_SHOWN - 20)  # the one asked for, then the backlog
    ran = MAX_SHOWN - 20
    # 480 jobs run, each heard and listed by the window: long on a loaded machine.
    qtbot.waitUntil(lambda: model.get(backlog[ran]).state == "done", timeout=60_000)  # type: ignore[union-attr]
    qtbot.waitUntil(
        lambda: model.get(backlog[MAX_SHOWN]) is not None and _idle(gui), timeout=60_000
    )
    listed = [job_id for job_id in _shown(model) if job_id in set(model.open_job_ids())]
    assert listed == backlog[ran + 1 : ran + 1 + len(listed)]  # the next ones, in order
    assert MAX_SHOWN - 20 < len(listed) <= MAX_SHOWN
    assert model.rowCount() <= MAX_SHOWN + 1
    waiting = len(backlog) - 1 - ran
    assert panel.unlisted.text().startswith(f"Showing {len(listed)} of {waiting:,} ")


def test_the_names_kept_for_the_queue_are_those_last_heard_of(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Every patient created or changed left their name in the queue's memory until
    deleted (150 B each, every day's watch-folder patients). The queue keeps the
    NAMES_KEPT last heard of; a listed row keeps its name, and a new job of a patient
    no longer kept is named all the same."""
    gui = make_gui()  # no model installed: the jobs wait in the queue
    app = gui.application
    actor = Actor("t", "gui")
    early = app.patients.create_patient(
        {"name": "Ada Early"}, actor=actor, image=NewImage(png_bytes())
    )
    job = app.jobs.queue_patient_analysis(early.id, actor=actor)
    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: _cell(model, job.id, "Patient") == "Ada Early")

    for number in range(NAMES_KEPT + 10):  # as many patients arriving by the folder
        others = replace(early, id=f"pt-other-{number}", name=f"Other {number}")
        gui.bridge.patient_created.emit(others)
    assert len(gui.jobs._names) == NAMES_KEPT
    assert _cell(model, job.id, "Patient") == "Ada Early"
    again = app.jobs.queue_patient_analysis(early.id, actor=actor, question="Any drusen?")
    qtbot.waitUntil(lambda: _cell(model, again.id, "Patient") == "Ada Early")


def test_a_long_reason_to_wait_is_short_in_the_panel_and_whole_behind_details(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    """The model not installed, the reason (what is missing, the folder it looked in,
    what to do) ran to five lines above a job queue docked 121 px tall: the panel says
    what is wrong and what makes the queue run in two lines at most; the whole reason is
    in the tooltip and behind Details…."""
    empty = tmp_path / "model"
    empty.mkdir()
    gui = make_gui(model_path=empty)  # no model installed: the job waits
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Waits"}, actor=Actor("t", "gui"), image=NewImage(png_bytes())
    )
    app.jobs.queue_patient_analysis(patient.id, actor=Actor("t", "gui"))
    panel = gui.jobs_panel
    qtbot.waitUntil(lambda: "not installed" in panel.waiting.text())
    reason = app.worker.waiting_reason or ""
    assert "Model manager" in reason and len(reason) > 150  # what the trial saw

    panel.resize(700, 121)
    line = panel.waiting.fontMetrics().lineSpacing()
    assert panel.waiting.heightForWidth(panel.waiting.width()) <= 2 * line + 4
    shown = panel.waiting.text()
    assert shown.startswith("Queued analyses are waiting: the model is not installed.")
    assert "download it (AI ▸ Model manager…) or set" in shown  # what to do stays
    assert "ophthai download-model" in reason  # a computer without a window: the tooltip
    assert panel.waiting.toolTip() == f"Queued analyses are waiting: {reason}"
    # The worker's heading, then the engine's "The model is not installed: F holds none".
    assert panel.waiting.toolTip().count("not installed") == 1
    assert f"not installed. {empty} holds none of its files." in panel.waiting.toolTip()

    assert panel.waiting_details.isVisibleTo(panel)
    panel.waiting_details.click()
    box = panel.details_box
    assert box is not None and box.isVisible()
    assert box.text() == f"Queued analyses are waiting: {reason}"
    box.close()
    qtbot.waitUntil(lambda: panel.details_box is None)


def test_the_details_box_follows_the_reason_and_closes_when_it_clears(qtbot: QtBot) -> None:
    """Details… open while the reason changed kept the old reason (found by review): it
    says the new one, and goes when the queue no longer waits."""
    panel = JobQueuePanel(JobTableModel())
    qtbot.addWidget(panel)
    panel.show()
    missing = "the model is not installed. " + "It was looked for in /a/folder/" * 8
    panel.set_waiting(missing)
    panel.waiting_details.click()
    box = panel.details_box
    assert box is not None and box.isVisible()

    damaged = "the model has damaged files. " + "Copy them again from /b/folder/" * 8
    panel.set_waiting(damaged)
    assert box.text() == f"Queued analyses are waiting: {damaged}"
    panel.set_waiting("model loading")  # short: Details… goes, the open box still says it
    assert box.text() == "Queued analyses are waiting: model loading"

    panel.set_waiting(None)
    qtbot.waitUntil(lambda: panel.details_box is None)
    assert not box.isVisible()


def test_a_short_reason_to_wait_is_shown_whole_without_details(qtbot: QtBot) -> None:
    panel = JobQueuePanel(JobTableModel())
    qtbot.addWidget(panel)
    panel.set_waiting("the model was unloaded; load it to run the queue")
    assert panel.waiting.text() == (
        "Queued analyses are waiting: the model was unloaded; load it to run the queue"
    )
    assert not panel.waiting_details.isVisibleTo(panel)
    assert panel.waiting.toolTip() == ""
    panel.set_waiting(None)
    assert panel.waiting.text() == ""
    assert not panel.waiting_details.isVisibleTo(panel)


@pytest.mark.parametrize(
    ("reason", "shown"),
    [
        (
            "The model in /home/clinic/.cache/huggingface/hub/models--OctoMed--OctoMed-7B/"
            "snapshots/0123456789abcdef has damaged or half-copied files (model.safetensors). "
            "Copy them again from a complete copy. Queued analyses stay queued (none is "
            "failed) and run once the model loads: put right what this says, then check "
            "again (AI ▸ Check model files again).",
            "The model in /home/clinic/.…s/0123456789abcdef has damaged or half-copied files "
            "(model.safetensors). To run them, put right what this says, then check "
            "again (AI ▸ Check model files again).",
        ),
        ("model loading", "model loading"),
        ("Something odd. More about it.", "Something odd."),
    ],
)
def test_short_waiting_keeps_what_is_wrong_and_what_to_do(reason: str, shown: str) -> None:
    assert short_waiting(reason) == shown


def _shown(model: JobTableModel) -> list[int]:
    """The jobs the queue lists, top to bottom."""
    return [row.job_id for row in model.records()]


def test_a_job_moves_to_the_top_when_it_starts_and_below_the_queue_when_it_ends(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """The queue listed the newest job first: behind a backlog the running one and those
    that run next were hundreds of rows down. It lists what runs now, then what runs
    next, then what ended (the last to end first); the job the clinician selected stays
    selected as the rows move."""
    hold = threading.Event()
    gui = make_gui(engine=ScriptedEngine(DME, hold=hold))
    app, actor = gui.application, Actor("t", "gui")
    first, second, third = (
        app.patients.create_patient({"name": name}, actor=actor, image=NewImage(png_bytes()))
        for name in ("First", "Second", "Third")
    )
    a = app.jobs.queue_patient_analysis(first.id, actor=actor).id
    qtbot.waitUntil(lambda: app.jobs.get_job(a).state == "running")
    b = app.jobs.queue_patient_analysis(second.id, actor=actor).id
    c = app.jobs.queue_patient_analysis(third.id, actor=actor).id
    panel, model = gui.jobs_panel, gui.jobs_panel.model
    qtbot.waitUntil(lambda: len(_shown(model)) == 3 and model.get(a).state == "running")  # type: ignore[union-attr]
    assert _shown(model) == [a, b, c]
    assert panel.select_job(b)

    app.jobs.request_cancel(a, actor=actor)  # the running one ends: the next one runs
    qtbot.waitUntil(lambda: model.get(b).state == "running")  # type: ignore[union-attr]
    assert model.get(a).state == "cancelled"  # type: ignore[union-attr]
    assert _shown(model) == [b, c, a]
    assert panel.selected_job_id() == b and panel.cancel.isEnabled()

    hold.set()
    qtbot.waitUntil(lambda: model.get(c).state == "done")  # type: ignore[union-attr]
    assert _shown(model) == [c, b, a]  # the last to end first
    assert panel.selected_job_id() == b and not panel.cancel.isEnabled()


def test_a_job_moved_ahead_moves_up_the_queue_and_stays_selected(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Analyse on the patient of a watch-folder job moves it ahead of the others: its
    row moves to where the worker takes it (by when it was queued among the requested
    ones), still selected, and Enter opens its patient."""
    gui = make_gui()  # no model installed: the jobs wait in the queue
    app, actor = gui.application, Actor("t", "gui")
    layout = FolderLayout.under(app.settings.resolved_watch_folder)
    layout.ensure()
    from_folder = []
    for i in range(3):
        (layout.root / f"device_{i}.png").write_bytes(png_bytes((40 + i, 30)))
        from_folder.append(app.ingest.ingest_file(layout.root / f"device_{i}.png", layout))
    w1, w2, w3 = (result.job_id or 0 for result in from_folder)
    patient = app.patients.create_patient({"name": "A"}, actor=actor, image=NewImage(png_bytes()))
    asked = app.jobs.queue_patient_analysis(patient.id, actor=actor).id
    panel, model = gui.jobs_panel, gui.jobs_panel.model
    qtbot.waitUntil(lambda: len(_shown(model)) == 4)
    assert _shown(model) == [asked, w1, w2, w3]
    gui.window.activateWindow()
    assert panel.select_job(w3)

    app.jobs.queue_patient_analysis(from_folder[2].patient_id or "", actor=actor)
    qtbot.waitUntil(lambda: _cell(model, w3, "Priority") == "Requested")
    # Queued before the one asked for, it now runs first, as the worker takes them.
    assert _shown(model) == [w3, asked, w1, w2]
    assert _shown(model) == [job.id for job in app.jobs.list_queue(limit=10, finished=0).open]
    assert panel.selected_job_id() == w3

    panel.table.setFocus()
    qtbot.waitUntil(panel.table.hasFocus)
    with qtbot.waitSignal(panel.job_opened) as opened:
        qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    assert opened.args == [w3]


def _expected_order(rows: dict[int, JobRow]) -> list[int]:
    """The queue's order worked out apart from the model: running, then queued as the
    worker takes them, then ended (the last to end first)."""
    running = [row for row in rows.values() if row.state == "running"]
    queued = [row for row in rows.values() if row.state == "queued"]
    ended = [row for row in rows.values() if row.state not in ("queued", "running")]
    running.sort(key=lambda row: (-(row.priority or 0), row.queued_time, row.job_id))
    queued.sort(key=lambda row: (-(row.priority or 0), row.queued_time, row.job_id))
    ended.sort(key=lambda row: (row.finished_time or 0.0, row.job_id), reverse=True)
    return [row.job_id for row in (*running, *queued, *ended)]


def test_rows_keep_their_order_and_the_selection_through_a_burst_of_events(
    qtbot: QtBot,
) -> None:
    """A full queue (MAX_SHOWN rows) through many starts, ends, moves ahead and new jobs:
    after each, the rows are in the worker's order and the selected job is still the one
    selected (the view's current row follows it too)."""
    import random

    model = JobTableModel()
    panel = JobQueuePanel(model)
    qtbot.addWidget(panel)
    panel.show()
    background, interactive = JobPriority.BACKGROUND, JobPriority.INTERACTIVE
    for job_id in range(1, MAX_SHOWN + 1):
        priority = interactive if job_id % 7 == 0 else background
        model.upsert(replace(new_job_row(job_id, f"pt-{job_id}", priority=priority)))
    assert _shown(model) == _expected_order({row.job_id: row for row in model.records()})
    chosen = random.Random(4)
    next_id = MAX_SHOWN + 1
    for step in range(400):
        shown = _shown(model)
        queued = [job for job in shown if model.get(job).state == "queued"]  # type: ignore[union-attr]
        running = [job for job in shown if model.get(job).state == "running"]  # type: ignore[union-attr]
        what, job = step % 4, None
        if what == 0 and queued:
            job, changes = queued[0], {"state": "running"}
        elif what == 1 and running:
            job, changes = chosen.choice(running), {"state": chosen.choice(["done", "failed"])}
        elif what == 2 and queued:
            job, changes = chosen.choice(queued), {"priority": interactive}
        # Every other step the job that changes is the one selected.
        selected = job if job is not None and step % 8 < 4 else chosen.choice(shown)
        assert panel.select_job(selected)
        if job is None:
            model.upsert(new_job_row(next_id, None, priority=background))
            next_id += 1
        else:
            model.update(job, **changes)
        rows = {row.job_id: row for row in model.records()}
        assert _shown(model) == _expected_order(rows), step
        if selected in rows:
            assert panel.selected_job_id() == selected, step
            assert panel.table.currentIndex().row() == model.position(selected), step


def test_a_long_queue_is_listed_a_page_a_turn_keeping_the_selection_and_the_order(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker
) -> None:
    """A read of the queue's 500 rows was listed at once (10 ms on the GUI thread, and a
    read again lost the selection): the rows are listed a page an event-loop turn now, in
    place of those shown. A job that starts while its row waits to be listed is at the
    top once all are; the selected job stays selected, also through a read again."""
    app, _patient, asked = _queued_app(tmp_path, "Long Queue")
    backlog, since = _backlog(app, asked, MAX_SHOWN - 101)  # with 100 ended: 500 rows
    ended, _ = _backlog(app, asked, 100, ago=timedelta(days=2))
    with app.db.session() as session:
        for job_id in ended:
            job = session.get(m.Job, job_id)
            assert job is not None
            job.state, job.finished_at = "done", since
    gui = make_gui(application=app)  # the model is not installed: nothing runs
    model, panel, bridge = gui.jobs_panel.model, gui.jobs_panel, gui.bridge
    qtbot.waitUntil(lambda: model.rowCount() > 0)
    assert model.rowCount() < MAX_SHOWN  # not all in one turn
    assert panel.select_job(asked.id)  # the one asked for runs first: listed first
    late = backlog[-1]
    assert model.get(late) is None  # its row waits to be listed
    bridge.analysis_started.emit(late, asked.patient_id)

    qtbot.waitUntil(lambda: _idle(gui))
    assert model.rowCount() == MAX_SHOWN
    assert model.get(late).state == "running"  # type: ignore[union-attr]
    rows = {row.job_id: row for row in model.records()}
    assert _shown(model) == _expected_order(rows)
    assert _shown(model)[:2] == [late, asked.id]
    assert panel.selected_job_id() == asked.id

    gui.jobs._load()  # read again (as after events that were dropped)
    qtbot.waitUntil(lambda: gui.jobs.loading)
    qtbot.waitUntil(lambda: _idle(gui))
    assert model.rowCount() == MAX_SHOWN
    assert panel.selected_job_id() == asked.id


def test_the_read_failure_banner_goes_once_read_while_the_window_is_in_the_tray(
    qtbot: QtBot, tmp_path: Path, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window hidden (closed to the tray) while the queue is read again: the banner
    was compared by its visible text, "" for a hidden window, so "could not be read;
    trying again" stayed there, out of date, when the window was opened again."""
    gui, job, locked = _queue_read_refused_at_start(qtbot, tmp_path, make_gui, monkeypatch)
    gui.window.hide()
    locked.clear()
    qtbot.waitUntil(lambda: gui.jobs_panel.model.get(job.id) is not None, timeout=5000)

    gui.window.show()
    qtbot.waitExposed(gui.window)
    assert "job queue could not be read" not in gui.window.banner.text()


def test_rows_placed_with_a_key_met_twice_list_it_once_at_its_later_place(
    qtbot: QtBot,
) -> None:
    """:meth:`place_rows` given a job twice (a read in parts), between others and last:
    each job listed once, the repeated one where it was met last, with those values."""
    model = JobTableModel()
    one, two, three = (new_job_row(job_id, f"pt-{job_id}") for job_id in (1, 2, 3))
    done = replace(one, state="done", tokens=7)
    end = model.place_rows(0, [one, two, done, three], {1, 2, 3})
    assert (end, _shown(model)) == (3, [2, 1, 3])
    assert model.get(1) == done
    last = replace(three, state="failed")
    end = model.place_rows(0, [two, three, one, last], {1, 2, 3})
    assert (end, _shown(model)) == (3, [2, 1, 3])
    assert model.get(3) == last
    model.add_tokens(3, 1)  # its row is there to show it (it was lost off the end)
    assert model.get(3).tokens == 1  # type: ignore[union-attr]


def test_a_failed_job_says_why_on_its_state_where_the_note_column_gave_way(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """At 1440 x 900 the queue is too narrow for its Note column, which gives way first:
    a failed job showed "failed" and nothing more, its reason nowhere in the queue."""
    engine = ScriptedEngine(answer=DME, fail_with=RuntimeError("CUDA error: out of memory"))
    gui = make_gui(engine=engine)
    gui.window.resize(1440, 900)
    app = gui.application
    actor = Actor("t", "gui")
    patient = app.patients.create_patient(
        {"name": "Fails"}, actor=actor, image=NewImage(png_bytes())
    )
    job = app.jobs.queue_patient_analysis(patient.id, actor=actor).id
    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: _cell(model, job, "State") == "failed")

    table = gui.jobs_panel.table
    assert table.isColumnHidden(HEADERS.index("Note"))
    assert not table.isColumnHidden(HEADERS.index("State"))
    tip = _cell(model, job, "State", Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("Failed: ") and "CUDA error: out of memory" in tip

    # Analysed again, and done: that job's state has nothing to add.
    engine.fail_with = None
    open_patient(qtbot, gui, patient.id)
    gui.analysis_view.analyse.click()
    qtbot.waitUntil(lambda: model.rowCount() == 2 and model.records()[0].state == "done")
    again = model.records()[0].job_id
    assert not _cell(model, again, "State", Qt.ItemDataRole.ToolTipRole)


def test_cancel_pressed_twice_before_the_queue_shows_it_cancelled_says_nothing_went_wrong(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancel pressed again while the row said "cancelling…" (the job queue busy with a
    few hundred analyses: the row stays queued a moment) asked again, and the window
    warned "Job 9 already ended (cancelled)", as if the cancel had not gone as asked."""
    gui, job = _one_queued_job(qtbot, make_gui)
    app, model, panel = gui.application, gui.jobs_panel.model, gui.jobs_panel
    panel.select_job(job.id)
    asked: list[int] = []
    request_cancel = app.jobs.request_cancel

    def counted(job_id: int, **kwargs: Any) -> Any:
        asked.append(job_id)
        return request_cancel(job_id, **kwargs)

    monkeypatch.setattr(app.jobs, "request_cancel", counted)

    panel.cancel.click()
    panel.cancel.click()

    qtbot.waitUntil(lambda: model.get(job.id).state == "cancelled")  # type: ignore[union-attr]
    qtbot.wait(500)  # a second cancel's answer, were one asked, is in by now
    assert asked == [job.id]  # asked once: the two presses ran side by side before
    assert "already ended" not in gui.window.banner.text()
    assert app.jobs.get_job(job.id).state == "cancelled"


def _nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice: Linux")
def test_a_cancel_is_written_at_the_window_s_priority(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cancel's change holds the interpreter lock the window waits for: written by a
    thread one notch below the window's, it was the one the operating system set aside
    on a busy machine, lock held, and each Cancel stalled the window for 0.2-1 s. Long
    work (a download) stays below it."""
    gui, job = _one_queued_job(qtbot, make_gui)
    app, model, panel = gui.application, gui.jobs_panel.model, gui.jobs_panel
    written_at: list[int] = []
    request_cancel = app.jobs.request_cancel

    def noted(job_id: int, **kwargs: Any) -> Any:
        written_at.append(_nice_of_this_thread())
        return request_cancel(job_id, **kwargs)

    monkeypatch.setattr(app.jobs, "request_cancel", noted)
    panel.select_job(job.id)
    panel.cancel.click()
    qtbot.waitUntil(lambda: model.get(job.id).state == "cancelled")  # type: ignore[union-attr]
    window_s = _nice_of_this_thread()
    assert written_at == [window_s]

    read_at: list[int] = []
    gui.tasks.submit(_nice_of_this_thread, read_at.append)  # a read, as a page's
    slow_at: list[int] = []
    gui.slow_tasks.submit(_nice_of_this_thread, slow_at.append)
    qtbot.waitUntil(lambda: bool(read_at and slow_at))
    assert read_at == [window_s]
    assert slow_at[0] > window_s or window_s == 19


def _three_queued_jobs(qtbot: QtBot, make_gui: Maker) -> tuple[GuiSession, list[JobRecord]]:
    """A window (no model: the analyses stay queued) listing three queued jobs."""
    gui = make_gui()
    actor = Actor("t", "gui")
    app = gui.application
    jobs = []
    for name in ("A", "B", "C"):
        patient = app.patients.create_patient(
            {"name": name}, actor=actor, image=NewImage(png_bytes())
        )
        jobs.append(app.jobs.queue_patient_analysis(patient.id, actor=actor))
    model = gui.jobs_panel.model
    qtbot.waitUntil(lambda: all(model.get(job.id) is not None for job in jobs))
    return gui, jobs


def _select_also(panel: JobQueuePanel, job_id: int) -> None:
    """Add the job's row to the selection, as Ctrl+click does."""
    from PySide6.QtCore import QItemSelectionModel

    position = panel.model.position(job_id)
    assert position is not None
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    panel.table.selectionModel().select(panel.model.index(position, 0), flags)


def _answer(panel: JobQueuePanel, *, yes: bool, asked: str) -> None:
    box = panel.confirm
    assert box is not None and box.isVisible()
    assert box.text() == asked
    box.property("yesButton" if yes else "noButton").click()


def test_cancel_with_every_job_selected_asks_first_and_keep_them_cancels_none(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Ctrl+A then Cancel cancelled the whole backlog at once, with nothing asked."""
    gui, jobs = _three_queued_jobs(qtbot, make_gui)
    app, model, panel = gui.application, gui.jobs_panel.model, gui.jobs_panel
    panel.table.selectAll()  # Ctrl+A (a key press here left Ctrl held for later tests)
    assert sorted(panel.selected_job_ids()) == sorted(job.id for job in jobs)

    panel.cancel.click()
    _answer(panel, yes=False, asked="Cancel 3 analyses?")

    assert not gui.tasks.busy
    assert [app.jobs.get_job(job.id).state for job in jobs] == ["queued"] * 3
    assert [model.get(job.id).state for job in jobs] == ["queued"] * 3  # type: ignore[union-attr]


def test_several_selected_analyses_are_cancelled_with_one_press(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backlog the clinician does not want run took one selection and one Cancel per
    analysis: several are selected (Ctrl, Shift) and one press cancels them all, and
    only them."""
    gui, (first, second, third) = _three_queued_jobs(qtbot, make_gui)
    app, model, panel = gui.application, gui.jobs_panel.model, gui.jobs_panel
    asked: list[int] = []
    request_cancel = app.jobs.request_cancel

    def counted(job_id: int, **kwargs: Any) -> Any:
        asked.append(job_id)
        return request_cancel(job_id, **kwargs)

    monkeypatch.setattr(app.jobs, "request_cancel", counted)
    panel.select_job(first.id)
    _select_also(panel, third.id)
    assert panel.selected_job_ids() == [first.id, third.id]
    assert panel.cancel.isEnabled()

    panel.cancel.click()
    _answer(panel, yes=True, asked="Cancel 2 analyses?")

    for job in (first, third):
        qtbot.waitUntil(lambda job=job: model.get(job.id).state == "cancelled")  # type: ignore[union-attr,misc]
    assert sorted(asked) == sorted([first.id, third.id])
    assert app.jobs.get_job(second.id).state == "queued"
    assert model.get(second.id).state == "queued"  # type: ignore[union-attr]
    panel.select_job(second.id)  # one row chosen again replaces the selection
    assert panel.selected_job_ids() == [second.id]


def test_one_of_several_cancels_refused_says_which_and_the_others_go_through(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One job of those selected cannot be cancelled (it ended meanwhile, elsewhere):
    the others are cancelled, its row does not stay "cancelling…", and the banner says
    which one was not."""
    from ophthai_desktop.core.errors import Conflict

    gui, (first, second, _third) = _three_queued_jobs(qtbot, make_gui)
    app, model, panel = gui.application, gui.jobs_panel.model, gui.jobs_panel
    request_cancel = app.jobs.request_cancel

    def refused_for_first(job_id: int, **kwargs: Any) -> Any:
        if job_id == first.id:
            raise Conflict(f"job {job_id} already ended (done)")
        return request_cancel(job_id, **kwargs)

    monkeypatch.setattr(app.jobs, "request_cancel", refused_for_first)
    panel.select_job(first.id)
    _select_also(panel, second.id)
    panel.cancel.click()
    _answer(panel, yes=True, asked="Cancel 2 analyses?")

    qtbot.waitUntil(lambda: model.get(second.id).state == "cancelled")  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: "already ended" in gui.window.banner.text())
    row = model.get(first.id)
    assert row is not None and row.state == "queued" and row.note == ""


def test_several_cancels_refused_for_different_reasons_name_each_job_s_reason(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancels refused for different reasons (one job ended elsewhere, the database
    not answering for the others): the banner gave only the first job's reason, as
    if all had ended. Each reason is said with the jobs it was for, a line each."""
    from ophthai_desktop.core.errors import Conflict, DatabaseUnavailable
    from ophthai_desktop.ui.messages import DATABASE_DOWN

    gui, (first, second, third) = _three_queued_jobs(qtbot, make_gui)
    app, model, panel = gui.application, gui.jobs_panel.model, gui.jobs_panel

    def refused(job_id: int, **_kwargs: Any) -> Any:
        if job_id == first.id:
            raise Conflict(f"job {job_id} already ended (done)")
        raise DatabaseUnavailable()

    monkeypatch.setattr(app.jobs, "request_cancel", refused)
    panel.select_job(first.id)
    _select_also(panel, second.id)
    _select_also(panel, third.id)
    panel.cancel.click()
    _answer(panel, yes=True, asked="Cancel 3 analyses?")

    qtbot.waitUntil(lambda: "not cancelled" in gui.window.banner.text())
    lines = gui.window.banner.text().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"Job #{first.id} was not cancelled") and "already ended" in lines[0]
    assert lines[1] == f"Jobs #{second.id}, #{third.id} were not cancelled: {DATABASE_DOWN}"
    for job in (first, second, third):
        row = model.get(job.id)
        assert row is not None and row.state == "queued" and row.note == ""


def test_a_selected_job_taken_off_the_queue_leaves_the_others_selected(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Several jobs chosen to cancel: one of them taken off the queue (its patient
    deleted by a client) cleared the whole selection, and Cancel with it. Only it
    leaves the selection, whether the keyboard was on it or on another."""
    gui, (first, second, third) = _three_queued_jobs(qtbot, make_gui)
    app, model, panel = gui.application, gui.jobs_panel.model, gui.jobs_panel
    actor = Actor("t", "gui")
    panel.select_job(first.id)  # the keyboard's row
    _select_also(panel, second.id)
    _select_also(panel, third.id)

    app.patients.delete_patient(third.patient_id or "", actor=actor)
    qtbot.waitUntil(lambda: model.get(third.id) is None)
    assert panel.selected_job_ids() == [first.id, second.id]
    assert model.row_at(panel.table.currentIndex().row()).job_id == first.id  # type: ignore[union-attr]

    app.patients.delete_patient(first.patient_id or "", actor=actor)
    qtbot.waitUntil(lambda: model.get(first.id) is None)
    assert panel.selected_job_ids() == [second.id]
    assert panel.cancel.isEnabled()
    # The keyboard's row went: it is on the one still chosen, none of the others.
    assert model.row_at(panel.table.currentIndex().row()).job_id == second.id  # type: ignore[union-attr]


def test_enter_with_several_jobs_selected_opens_the_one_the_keyboard_is_on(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """Several jobs selected: Enter opens one patient, that of the row the keyboard is
    on (Ctrl+click puts it there), or, the keyboard on a row not selected, the first
    selected in the queue's order."""
    from PySide6.QtCore import QItemSelectionModel

    gui, (first, second, third) = _three_queued_jobs(qtbot, make_gui)
    model, panel = gui.jobs_panel.model, gui.jobs_panel
    panel.select_job(first.id)
    _select_also(panel, third.id)
    chosen = panel.table.selectionModel()
    no_update = QItemSelectionModel.SelectionFlag.NoUpdate
    chosen.setCurrentIndex(model.index(model.position(third.id) or 0, 0), no_update)
    panel.table.setFocus()
    qtbot.waitUntil(panel.table.hasFocus)
    with qtbot.waitSignal(panel.job_opened) as opened:
        qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    assert opened.args == [third.id]

    chosen.setCurrentIndex(model.index(model.position(second.id) or 0, 0), no_update)
    with qtbot.waitSignal(panel.job_opened) as opened:
        qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    assert opened.args == [first.id]
    assert panel.selected_job_ids() == [first.id, third.id]
