"""The SQLite file deleted or replaced while the app runs: SQLite would go on writing
into the removed file, which vanishes at quit. Every call is refused with a message that
says so (an outage that lasts until the app is started again), no empty file is created
at the path, files wait in the watch folder and a finished analysis is held."""

from __future__ import annotations

import gc
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

from ophthai_desktop.bootstrap import Application, build_application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core import watcher as watcher_module
from ophthai_desktop.core.errors import DatabaseFileGone
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.core.watcher import WatcherState
from ophthai_desktop.core.worker import InferenceWorker
from tests.support.images import png_bytes
from tests.support.scripted_engine import DME, ScriptedEngine
from tests.support.watch_folder import build_watch_app, wait_until

NAME = "Gone Patient-Secret"


def _wait(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def database_file(app: Application) -> Path:
    path = app.db.url.database
    assert path
    return Path(path)


def delete_database(app: Application) -> Path:
    """``rm ophthai.db*`` while the app runs."""
    path = database_file(app)
    for companion in ("", "-wal", "-shm"):
        Path(f"{path}{companion}").unlink(missing_ok=True)
    return path


def expected(path: Path) -> str:
    return f"the database file {path.absolute()} was deleted or replaced while OphthAI ran"


def test_a_write_after_the_file_is_deleted_is_refused_and_no_file_is_created(
    sqlite_services: Application, actor: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    app = sqlite_services
    app.patients.create_patient({"name": NAME}, actor=actor)
    seen: list[ev.Event] = []
    app.bus.subscribe(seen.append)
    path = delete_database(app)
    with caplog.at_level(logging.INFO):
        with pytest.raises(DatabaseFileGone) as refused:
            app.patients.create_patient({"name": NAME}, actor=actor)
        assert refused.value.message.startswith(expected(path))
        assert "start it again" in refused.value.message
        assert not any(isinstance(e, ev.PatientCreated) for e in seen)
        with pytest.raises(DatabaseFileGone):  # reads too: they show what will vanish
            app.patients.list_patients()
        app.db.dispose()  # a new connection: SQLite would create an empty file
        with pytest.raises(DatabaseFileGone):
            app.patients.create_patient({"name": NAME}, actor=actor)
        with pytest.raises(DatabaseFileGone):
            app.db.probe()  # the outage's probe never ends it
    assert not path.exists()
    assert not app.db.availability.available
    assert seen.count(ev.DatabaseAvailabilityChanged(False)) == 1
    assert app.db.outage_cause is not None and app.db.outage_cause.startswith(expected(path))
    assert str(path.absolute()) in caplog.text
    # The outage's own line says what ends it (it said "the database does not answer
    # (DatabaseFileGone): ... wait until it does", which it never will).
    assert "does not answer" not in caplog.text
    assert "wait; they go on once the file is put back and OphthAI is started again" in caplog.text
    assert "Secret" not in caplog.text


def test_a_file_replaced_by_a_copy_is_not_written_to(
    sqlite_services: Application, actor: Actor
) -> None:
    """A backup restored over the file while the app runs: another file at the path."""
    app = sqlite_services
    app.patients.create_patient({"name": NAME}, actor=actor)
    path = database_file(app)
    copy = path.with_name("restored.db")
    with sqlite3.connect(path) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    os.replace(copy, path)
    with pytest.raises(DatabaseFileGone):
        app.patients.create_patient({"name": NAME}, actor=actor)
    with sqlite3.connect(path) as restored:
        assert restored.execute("SELECT count(*) FROM patients").fetchone() == (1,)


def test_watch_folder_files_wait_in_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
    app = build_watch_app(tmp_path)
    try:
        finished: list[ev.Event] = []
        app.bus.subscribe(lambda e: finished.append(e) if e.name == "ingest_finished" else None)
        assert app.watcher.start().state is WatcherState.RUNNING
        delete_database(app)
        image = app.watcher.folder / "Jane Doe.png"
        image.write_bytes(png_bytes((10, 10), (1, 6, 7)))
        # What the outage is, not "the database does not answer ... once it does".
        assert wait_until(lambda: app.watcher.status.message != "")
        assert app.watcher.status.message == (
            "the database file was deleted or replaced while OphthAI ran: new files wait in "
            "the folder and are taken in once the file is put back and OphthAI is started again"
        )
        time.sleep(0.3)  # several tries, each refused
        assert image.exists()
        assert finished == []
    finally:
        app.close()


def test_an_analysis_finished_after_the_file_is_deleted_is_held_not_announced(
    sqlite_services: Application, actor: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    app = sqlite_services
    seen: list[ev.Event] = []
    app.bus.subscribe(seen.append)
    hold = threading.Event()
    worker = InferenceWorker(ScriptedEngine(DME, hold=hold), app.jobs, app.bus)
    worker.start()
    try:
        patient = app.patients.create_patient(
            {"name": NAME}, actor=actor, image=NewImage(png_bytes((40, 30)))
        )
        job = app.jobs.queue_patient_analysis(patient.id, actor=actor)
        _wait(lambda: worker.current_job_id == job.id)
        path = delete_database(app)
        with caplog.at_level(logging.WARNING):
            hold.set()  # the model's answer arrives after the file is gone
            _wait(lambda: "stored once the database answers" in caplog.text)
        assert expected(path) in caplog.text
        assert worker.current_job_id == job.id  # held, tried again
        assert not any(isinstance(e, ev.AnalysisFinished) for e in seen)
    finally:
        worker.stop()


def test_a_closed_application_is_freed_with_its_database(settings: Settings, actor: Actor) -> None:
    """SQLAlchemy keeps each engine's dialect in its mappers' statement caches, which
    belong to the model classes and live as long as the process. A listener on the
    dialect that held the Database kept every closed one alive with its engine, pool and
    services (in the test suite, millions of objects: full collections of 14 s)."""
    app = build_application(settings)
    app.patients.create_patient({"name": NAME}, actor=actor)  # fills the mappers' caches
    database = weakref.ref(app.db)
    app.close()
    del app
    gc.collect()
    assert database() is None, "something still holds the closed database"
