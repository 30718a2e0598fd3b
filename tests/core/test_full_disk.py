"""The disk under the data folder full: the database's (SQLite's SQLITE_FULL,
PostgreSQL's ``disk_full``) and the image store's (ENOSPC) are :class:`NoRoom`, not an
outage. A full disk stays full until someone frees space, so
nothing says the database does not answer, nor that it is back while changes still
fail; the worker keeps a finished analysis and the watch folder its files until there is
room, and both say why they wait."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg.errors
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core import watcher as watcher_module
from ophthai_desktop.core.errors import DatabaseUnavailable, NoRoom
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.ingest import FolderLayout
from ophthai_desktop.core.services.notifications import NotificationService
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.core.storage.database import MIGRATIONS_DIR, Database, _revisions
from ophthai_desktop.core.watcher import WAITING_FOR_ROOM, WatcherState
from ophthai_desktop.core.worker import WAITING_FOR_ROOM as QUEUE_WAITING_FOR_ROOM
from ophthai_desktop.core.worker import InferenceWorker
from tests.support.images import png_bytes
from tests.support.outage import database_full
from tests.support.scripted_engine import DME, ScriptedEngine
from tests.support.watch_folder import EventLog, build_watch_app, wait_until

NAME = "Fulldisk Patient-Secret"

#: An answer too long to fit in what is left of a page: storing it needs new pages.
LONG_DME = dataclasses.replace(DME, explanation="Cysts in the outer plexiform layer. " * 300)


def _fill(app: Application, actor: Actor) -> NoRoom:
    """Changes until the full disk refuses one (each needs pages of its own); its error."""
    for _ in range(200):
        try:
            app.patients.create_patient({"name": NAME, "history": "h" * 5000}, actor=actor)
        except NoRoom as exc:
            return exc
    raise AssertionError("the full database took every change")


def test_a_change_the_full_disk_cannot_hold_is_no_room_not_an_outage(
    sqlite_services: Application, actor: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    """It was DatabaseUnavailable: a 503 with Retry-After, "the database does not
    answer", and the outage probe (BEGIN IMMEDIATE, ROLLBACK: it writes nothing, so a
    full disk lets it through) declared the database back while every change failed."""
    app = sqlite_services
    with caplog.at_level(logging.INFO), database_full(app.db):
        refused = _fill(app, actor)
        assert refused.message == "cannot write to the database: its disk is full"
        for _ in range(5):
            with pytest.raises(NoRoom):
                app.patients.create_patient({"name": NAME, "history": "h" * 5000}, actor=actor)
        assert app.db.availability.available  # no outage: nothing to declare over
        assert not app.db.availability.probing
        assert app.patients.list_patients().total > 0  # reads go on
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert said == [
        "the database's disk is full (OperationalError): changes fail until space is freed on it"
    ]  # once, not once a call
    assert "Fulldisk" not in caplog.text
    app.patients.create_patient({"name": NAME}, actor=actor)  # room again


def test_postgresql_s_disk_full_is_no_room(tmp_path: Path) -> None:
    """SQLSTATE 53100, as psycopg raises it (an OperationalError to SQLAlchemy)."""
    db = Database(f"sqlite:///{tmp_path / 'any.db'}")
    try:
        with pytest.raises(NoRoom), db.session():
            cause = psycopg.errors.DiskFull("could not extend file: No space left on device")
            raise OperationalError("INSERT ...", {}, cause)
        assert db.availability.available
    finally:
        db.close()


def _disk_io_error() -> sqlite3.OperationalError:
    """SQLite's error when the WAL's shared-memory index cannot grow, as sqlite3 raises
    it: the code says an I/O error, not why."""
    error = sqlite3.OperationalError("disk I/O error")
    error.sqlite_errorcode = sqlite3.SQLITE_IOERR_SHMSIZE
    error.sqlite_errorname = "SQLITE_IOERR_SHMSIZE"
    return error


def _cannot_open() -> sqlite3.Error:
    """SQLite's own "unable to open database file" (SQLITE_CANTOPEN), as a full disk
    gives it when the WAL or its index cannot be created."""
    try:
        sqlite3.connect("/nonexistent-ophthai-folder/x.db")
    except sqlite3.Error as error:
        assert error.sqlite_errorcode == sqlite3.SQLITE_CANTOPEN
        return error
    raise AssertionError("SQLite opened a file in a folder that does not exist")


@contextlib.contextmanager
def _sqlite_fails(db: Database, error: Callable[[], sqlite3.Error]) -> Iterator[None]:
    """Every statement (and new connection: the pool is emptied first) fails with
    ``error``, at the DBAPI, as SQLite raises it."""

    def fail(*_args: Any) -> None:
        raise error()

    event.listen(db.engine, "do_connect", fail)
    event.listen(db.engine, "do_execute", fail)
    db.dispose()
    try:
        yield
    finally:
        event.remove(db.engine, "do_connect", fail)
        event.remove(db.engine, "do_execute", fail)


def _database_folder(db: Database) -> Path:
    assert db.url.database is not None
    return Path(db.url.database).absolute().parent


def _disk_left(
    monkeypatch: pytest.MonkeyPatch, folder: Path, free_bytes: int
) -> Callable[[], list[str]]:
    """``folder``'s disk has ``free_bytes`` left for this account (``os.statvfs``, which
    ``shutil.disk_usage`` reads); the folders asked about, so a test can see it was."""
    real = os.statvfs
    asked: list[str] = []

    def statvfs(path: Any) -> os.statvfs_result:
        if Path(path) != folder:
            return real(path)
        asked.append(str(path))
        block = 4096
        return os.statvfs_result(
            (block, block, 1 << 20, free_bytes // block, free_bytes // block, 1000, 10, 10, 0, 255)
        )

    monkeypatch.setattr(os, "statvfs", statvfs)
    return lambda: asked


@pytest.mark.parametrize("error", [_disk_io_error, _cannot_open], ids=["ioerr", "cantopen"])
def test_an_io_error_on_a_full_disk_is_no_room_not_an_outage(
    sqlite_services: Application,
    actor: Actor,
    monkeypatch: pytest.MonkeyPatch,
    error: Callable[[], sqlite3.Error],
) -> None:
    """SQLite says a full disk as a disk I/O error (the WAL or its index could not grow)
    or as "unable to open database file": that was an outage ("the database does not
    answer", and the probe, which writes nothing, declared it back while changes still
    failed)."""
    app = sqlite_services
    folder = _database_folder(app.db)
    asked = _disk_left(monkeypatch, folder, 8192)  # two blocks: less than a change needs
    with _sqlite_fails(app.db, error), pytest.raises(NoRoom, match="its disk is full"):
        app.patients.create_patient({"name": NAME}, actor=actor)
    assert asked()
    assert app.db.availability.available
    assert not app.db.availability.probing
    monkeypatch.undo()
    app.patients.create_patient({"name": NAME}, actor=actor)


@pytest.mark.parametrize("error", [_disk_io_error, _cannot_open], ids=["ioerr", "cantopen"])
def test_an_io_error_on_a_disk_with_room_stays_an_outage(
    sqlite_services: Application,
    actor: Actor,
    monkeypatch: pytest.MonkeyPatch,
    error: Callable[[], sqlite3.Error],
) -> None:
    """Not every I/O error is a full disk: one on a disk with room is the database not
    answering, asked again until it does."""
    app = sqlite_services
    folder = _database_folder(app.db)
    asked = _disk_left(monkeypatch, folder, 10 * 1024 * 1024)
    with _sqlite_fails(app.db, error):
        with pytest.raises(DatabaseUnavailable):
            app.patients.create_patient({"name": NAME}, actor=actor)
        assert asked()
        assert not app.db.availability.available
    assert wait_until(lambda: app.db.availability.available)  # asked again: it answers


def test_an_analysis_finished_while_the_disk_is_full_is_stored_once_there_is_room(
    sqlite_services: Application, actor: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    """The worker retries it and says why the queue waits; it was retried as an outage
    (the log said the database does not answer, the queue nothing)."""
    app = sqlite_services
    hold = threading.Event()
    worker = InferenceWorker(ScriptedEngine(LONG_DME, hold=hold), app.jobs, app.bus)
    log = EventLog(app.bus)
    patient = app.patients.create_patient(
        {"name": NAME}, actor=actor, image=NewImage(png_bytes((40, 30)))
    )
    worker.start()
    try:
        job = app.jobs.queue_patient_analysis(patient.id, actor=actor)
        assert wait_until(lambda: worker.current_job_id == job.id)
        with caplog.at_level(logging.INFO), database_full(app.db):
            _fill(app, actor)
            hold.set()  # the model's answer arrives while the disk is full
            assert wait_until(lambda: worker.waiting_reason == QUEUE_WAITING_FOR_ROOM)
            assert "its outcome is stored once space is freed" in caplog.text
            assert app.jobs.get_job(job.id).state == "running"  # not failed, not lost
            assert app.db.availability.available
        assert wait_until(lambda: app.jobs.get_job(job.id).state == "done")
        analysis = app.jobs.outcome(job.id).analysis
        assert analysis is not None and analysis.result is not None
        assert analysis.result["explanation"] == LONG_DME.explanation
        assert wait_until(lambda: worker.waiting_reason is None)
        assert [e.waiting for e in log.of(ev.QueueWaitingChanged)] == [
            QUEUE_WAITING_FOR_ROOM,
            None,
        ]
    finally:
        worker.stop()


def test_files_wait_in_the_folder_while_the_database_s_disk_is_full(
    tmp_path: Path, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not moved to failed/ (they are not bad files), tried again, and the watch
    folder's state says the disk is full; taken in once there is room."""
    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
    app = build_watch_app(tmp_path)
    try:
        layout = FolderLayout.under(app.watcher.folder)
        layout.ensure()
        # Files for a patient on record: each try at the refused one stores the same rows.
        # Files for new demo patients drew new details at each try, and a shorter one
        # could fit where the refused one had not (it failed so in CI).
        patient = app.patients.create_patient({"name": NAME}, actor=actor)
        with database_full(app.db):
            _fill(app, actor)
            # Files like the watch folder's until the disk refuses one (a small one can
            # still fit in what is left of the pages): that one waits in the folder.
            for n in range(200):
                waiting = layout.root / f"{patient.id}_OD_{n}.png"
                waiting.write_bytes(png_bytes((10, 10), (n % 250, 6, 7)))
                try:
                    app.ingest.ingest_file(waiting, layout)
                except NoRoom:
                    break
            else:
                raise AssertionError("the full database took every file")
            log = EventLog(app.bus)
            assert app.watcher.start().state is WatcherState.RUNNING
            assert wait_until(lambda: app.watcher.status.message == WAITING_FOR_ROOM), (
                app.watcher.status,
                log.finished(),
            )
            assert not wait_until(lambda: bool(log.finished()), timeout_s=0.5)
            assert [p for p in layout.root.iterdir() if p.is_file()] == [waiting]
            assert not any(layout.failed.iterdir())
        assert (
            log.wait_finished(waiting.name)[waiting.name].outcome == "attached"
        )  # to the patient on record
        assert wait_until(lambda: app.watcher.status.message == "")
        assert not waiting.exists()
    finally:
        app.close()


def _fill_notifications(app: Application) -> None:
    """Notifications, shorter and shorter, until the full disk refuses even a short one
    (each table and index has pages of its own, which may still hold a small row)."""
    for length in (2000, 500, 100, 20):
        with contextlib.suppress(NoRoom):
            for _ in range(200):
                with app.db.session() as session:
                    NotificationService.create_in(
                        session, "x" * length, type="info", patient_id=None
                    )


def _told_of(app: Application, name: str) -> list[str]:
    """The notifications that name ``name``."""
    listed = app.notifications.list_notifications(limit=500).items  # newest first
    return [n.message for n in listed if name in n.message]


def test_a_bad_file_waits_in_the_folder_while_the_database_s_disk_is_full(
    tmp_path: Path, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its refusal could not be recorded, so nobody would be told: it was moved to
    failed/ all the same, with no record and no notification. It waits in the folder as
    a good file does, and is refused (moved, recorded, notified) once there is room."""
    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
    app = build_watch_app(tmp_path)
    try:
        layout = FolderLayout.under(app.watcher.folder)
        layout.ensure()
        log = EventLog(app.bus)
        bad = layout.root / "Jane Doe notes.png"
        with database_full(app.db):
            _fill(app, actor)
            _fill_notifications(app)
            bad.write_bytes(b"not an image at all")
            assert app.watcher.start().state is WatcherState.RUNNING
            assert wait_until(lambda: app.watcher.status.message == WAITING_FOR_ROOM), (
                app.watcher.status,
                log.finished(),
            )
            assert not wait_until(lambda: bool(log.finished()), timeout_s=0.5)
            assert bad.exists()
            assert not any(layout.failed.iterdir())
            assert not _told_of(app, bad.name)
        assert log.wait_finished(bad.name)[bad.name].outcome == "failed"
        assert sorted(p.name for p in layout.failed.iterdir()) == [
            bad.name,
            bad.name + ".reason.txt",
        ]
        told = _told_of(app, bad.name)
        assert len(told) == 1 and "Moved to failed/" in told[0]
        assert wait_until(lambda: app.watcher.status.message == "")
    finally:
        app.close()


def test_files_wait_in_the_folder_while_the_image_store_s_disk_is_full(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The store's copy into ``images/.staging`` fails with ENOSPC: the file is no bad
    file (not moved to failed/), it is tried again, and the state says the disk is full
    (it said nothing, and the log said "storage failed" at each try)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
    app = build_watch_app(tmp_path)
    tries: list[int] = []

    def full_file(*_args: Any, **_kwargs: Any) -> tuple[int, str]:
        tries.append(1)
        return os.open("/dev/full", os.O_WRONLY), str(tmp_path / "never-written")

    try:
        log = EventLog(app.bus)
        layout = FolderLayout.under(app.watcher.folder)
        layout.ensure()
        with caplog.at_level(logging.INFO):
            monkeypatch.setattr(tempfile, "mkstemp", full_file)  # the store's disk full
            (layout.root / "Jane Doe.png").write_bytes(png_bytes((10, 10), (1, 6, 7)))
            assert app.watcher.start().state is WatcherState.RUNNING
            assert wait_until(lambda: len(tries) >= 5)  # tried again and again
            assert app.watcher.status.message == WAITING_FOR_ROOM
            assert [p.name for p in layout.root.iterdir() if p.is_file()] == ["Jane Doe.png"]
            assert not any(layout.failed.iterdir())
            said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
            assert said == [watcher_module.STORAGE_WAITS[WAITING_FOR_ROOM]]  # once
            monkeypatch.undo()  # space freed
            monkeypatch.setattr(watcher_module, "STORAGE_RETRY_S", 0.05)
            finished = log.wait_finished("Jane Doe.png")
        assert finished["Jane Doe.png"].outcome == "ingested"
        assert wait_until(lambda: app.watcher.status.message == "")
        assert "Jane" not in caplog.text
    finally:
        app.close()


def test_an_upgrade_the_full_disk_cannot_hold_is_no_room_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """It was a plain StorageError quoting SQLite ("database or disk is full"), without
    saying which disk; the start now says the disk is full and where."""
    db = Database(f"sqlite:///{(tmp_path / 'old.db').as_posix()}")
    try:
        db.upgrade("0004")
        with database_full(db), pytest.raises(NoRoom) as refused:
            db.upgrade()
        assert f"the disk that holds it ({tmp_path}) is full" in refused.value.message
        with db.engine.connect() as connection:
            assert _revisions(connection) == "0004"
    finally:
        db.close()


def test_an_upgrade_the_full_disk_stopped_half_way_goes_through_once_there_is_room(
    tmp_path: Path,
) -> None:
    """SQLite ran a migration's ALTER before its first UPDATE outside the upgrade's
    transaction: from 0003, 0004's new column stayed while the revision was rolled back
    to 0003, and every start after space was freed failed ("duplicate column name:
    name_key"). Nothing of the failed upgrade may stay."""
    newest = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    db = Database(f"sqlite:///{(tmp_path / 'old.db').as_posix()}")
    try:
        db.upgrade("0003")
        with database_full(db), pytest.raises(NoRoom):
            db.upgrade()
        with db.engine.connect() as connection:
            columns = connection.exec_driver_sql("PRAGMA table_info(patients)").all()
        assert "name_key" not in {column[1] for column in columns}  # as it was at 0003

        db.upgrade()  # space freed: the next start

        with db.engine.connect() as connection:
            assert _revisions(connection) == newest
    finally:
        db.close()


def test_an_upgrade_first_copies_the_database_as_it_was(tmp_path: Path) -> None:
    """An upgrade goes one way: the copy lets the clinic go back to the version before."""
    file = tmp_path / "old.db"
    db = Database(f"sqlite:///{file.as_posix()}")
    try:
        db.upgrade("0003")
        with db.engine.begin() as connection:
            connection.exec_driver_sql(
                "INSERT INTO audit_events (at, actor, origin, action, entity_type, entity_id, "
                "details) VALUES ('2026-12-01 09:00:00', 'Dr A', 'test', 'created', 'patient', "
                "'p1', '{}')"
            )
        db.upgrade()
        db.upgrade()  # at the newest revision: nothing more to copy
    finally:
        db.close()

    copies = sorted(p.name for p in tmp_path.iterdir() if "before-upgrade" in p.name)
    assert copies == ["old.db.before-upgrade-from-0003"]
    copy = tmp_path / copies[0]
    assert copy.stat().st_mode & 0o777 == 0o600
    with contextlib.closing(sqlite3.connect(copy)) as kept:
        assert kept.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003",)]
        assert kept.execute("SELECT actor FROM audit_events").fetchall() == [("Dr A",)]


@pytest.mark.skipif(not hasattr(os, "O_ACCMODE"), reason="reads a POSIX descriptor's access mode")
def test_the_copy_before_an_upgrade_is_flushed_where_only_a_writable_handle_can_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows' fsync (FlushFileBuffers) refuses a handle opened read-only with EBADF:
    the copy was flushed through one, so every upgrade there stopped the start ("its
    copy from before the upgrade ... cannot be written (Bad file descriptor)")."""
    import fcntl

    db = Database(f"sqlite:///{(tmp_path / 'old.db').as_posix()}")
    try:
        db.upgrade("0004")
        real_fsync = os.fsync

        def windows_fsync(fd: int) -> None:
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                raise OSError(errno.EBADF, "Bad file descriptor")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", windows_fsync)
        db.upgrade()
        with db.engine.connect() as connection:
            assert _revisions(connection) == ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    finally:
        db.close()

    assert (tmp_path / "old.db.before-upgrade-from-0004").is_file()


def test_the_copy_before_an_upgrade_is_made_where_the_file_has_no_sqlite_uri(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Windows a file on a share (``\\\\server\\share\\ophthai.db``) has the URI
    ``file://server/share/ophthai.db``, whose authority SQLite refuses ("invalid uri
    authority: server"): the copy was read through that URI, so every upgrade of a
    database on a share stopped the start. Here the file's URI is given such an
    authority, as Windows' pathlib gives it."""
    file = tmp_path / "old.db"
    db = Database(f"sqlite:///{file.as_posix()}")
    try:
        db.upgrade("0004")
        real_as_uri = Path.as_uri

        def with_authority(path: Path) -> str:
            uri = real_as_uri(path)
            return uri.replace("file://", "file://server", 1) if path == file else uri

        monkeypatch.setattr(Path, "as_uri", with_authority)
        db.upgrade()
    finally:
        db.close()

    with contextlib.closing(sqlite3.connect(tmp_path / "old.db.before-upgrade-from-0004")) as kept:
        assert kept.execute("SELECT version_num FROM alembic_version").fetchall() == [("0004",)]


def test_two_starts_upgrading_at_once_copy_the_database_once(tmp_path: Path) -> None:
    """Both find the schema behind; the second takes the write lock once the first has
    upgraded it, and finds nothing to do. It copied the upgraded database all the same,
    as ``...before-upgrade-from-<newest>`` (a start with no upgrade to make, stopped
    where the disk had no room for that copy)."""
    newest = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    file = tmp_path / "old.db"
    first = Database(f"sqlite:///{file.as_posix()}")
    second = Database(f"sqlite:///{file.as_posix()}")
    waiting = [threading.Event(), threading.Event()]
    failures: list[BaseException] = []

    def said_behind(db: Database, found: threading.Event) -> None:
        def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement == "BEGIN IMMEDIATE":  # the schema found behind
                found.set()

        event.listen(db.engine, "before_cursor_execute", before)

    def start(db: Database) -> None:
        try:
            db.upgrade()
        except BaseException as exc:  # said below
            failures.append(exc)

    try:
        first.upgrade("0004")
        with contextlib.closing(sqlite3.connect(file, timeout=30)) as other:
            other.execute("BEGIN IMMEDIATE")  # both wait for it, having found it behind
            said_behind(first, waiting[0])
            said_behind(second, waiting[1])
            starts = [threading.Thread(target=start, args=(db,)) for db in (first, second)]
            for thread in starts:
                thread.start()
            assert all(found.wait(20) for found in waiting)
            other.rollback()
        for thread in starts:
            thread.join(60)
        assert not failures
        with first.engine.connect() as connection:
            assert _revisions(connection) == newest
    finally:
        first.close()
        second.close()

    copies = sorted(p.name for p in tmp_path.iterdir() if "before-upgrade" in p.name)
    assert copies == ["old.db.before-upgrade-from-0004"]


def test_a_new_database_is_not_copied(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{(tmp_path / 'new.db').as_posix()}")
    try:
        db.upgrade()
    finally:
        db.close()

    assert not [p for p in tmp_path.iterdir() if "before-upgrade" in p.name]


def test_an_upgrade_whose_copy_the_disk_cannot_hold_is_no_room_and_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite:///{(tmp_path / 'old.db').as_posix()}")
    try:
        db.upgrade("0004")
        real_fsync = os.fsync

        def no_room(fd: int) -> None:
            if os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
                raise OSError(errno.ENOSPC, "No space left on device")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", no_room)
        with pytest.raises(NoRoom) as refused:
            db.upgrade()
        with db.engine.connect() as connection:
            assert _revisions(connection) == "0004"
    finally:
        db.close()

    assert "old.db.before-upgrade-from-0004" in refused.value.message
    assert "No space left on device" in refused.value.message
    assert "the database was left as it was" in refused.value.message
    assert not [p for p in tmp_path.iterdir() if "before-upgrade" in p.name]
