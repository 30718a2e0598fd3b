"""A database that stops answering for a while (a PostgreSQL restart, a locked SQLite
file): the log says so once, reminds at most every minute, and says once that it is
back; the callers that retry meanwhile do not add a line per attempt."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ophthai_desktop.bootstrap import Application, build_application
from ophthai_desktop.core import worker as worker_module
from ophthai_desktop.core.errors import DatabaseUnavailable, StorageError
from ophthai_desktop.core.events import DatabaseAvailabilityChanged
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.storage import Database, availability
from ophthai_desktop.core.storage import database as database_module
from ophthai_desktop.core.worker import InferenceWorker
from tests.conftest import make_settings
from tests.support.outage import database_down
from tests.support.privileges import without_root_privilege
from tests.support.scripted_engine import NORMAL, ScriptedEngine

NAME = "Outage Patient-Secret"


def _wait(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO]


def test_an_outage_is_logged_once_reminded_every_minute_and_its_end_once(
    sqlite_services: Application, actor: Actor, caplog: pytest.LogCaptureFixture
) -> None:
    app = sqlite_services
    now = [1000.0]
    app.db.availability.clock = lambda: now[0]
    with caplog.at_level(logging.INFO), database_down(app.db):
        for _ in range(30):  # 30 s of calls refused, one a second
            with pytest.raises(StorageError):
                app.patients.create_patient({"name": NAME}, actor=actor)
            now[0] += 1
        down = _lines(caplog)
        assert len(down) == 1, down
        assert down[0].startswith("ERROR the database does not answer")
        # Not "files wait once it does" (the words of the file gone's line made it so).
        assert down[0].endswith("files wait; they go on once it does"), down[0]
        for _ in range(60):  # a minute later, one reminder
            with pytest.raises(DatabaseUnavailable):
                app.patients.list_patients()
            now[0] += 1
        assert len(_lines(caplog)) == 2, _lines(caplog)
        assert "still does not answer after 60 s" in _lines(caplog)[1]
    now[0] += availability.QUIET_S
    app.patients.create_patient({"name": NAME}, actor=actor)
    app.patients.list_patients()
    lines = [line for line in _lines(caplog) if "database" in line]
    assert len(lines) == 3, lines
    assert "the database answers again after 95 s" in lines[2]
    assert "Outage" not in caplog.text and "Secret" not in caplog.text


def test_reads_between_refused_writes_do_not_end_the_outage(
    sqlite_services: Application, caplog: pytest.LogCaptureFixture
) -> None:
    """A locked or read-only SQLite file answers reads and refuses writes: one outage,
    not one per write, until the writes have stopped failing for a while."""
    app = sqlite_services
    now = [0.0]
    app.db.availability.clock = lambda: now[0]
    with caplog.at_level(logging.INFO):
        for _ in range(10):
            with database_down(app.db), pytest.raises(DatabaseUnavailable):
                app.patients.list_patients()
            app.patients.list_patients()  # a read that works, a second later
            now[0] += 1
        assert len(_lines(caplog)) == 1, _lines(caplog)
        now[0] += availability.QUIET_S
        app.patients.list_patients()
    assert len(_lines(caplog)) == 2 and "answers again" in _lines(caplog)[1]


def test_the_worker_does_not_log_each_attempt_while_the_database_is_down(
    sqlite_services: Application,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = sqlite_services
    monkeypatch.setattr(worker_module, "IDLE_POLL_S", 0.01)
    worker = InferenceWorker(ScriptedEngine(NORMAL), app.jobs, app.bus)
    worker.start()
    try:
        _wait(lambda: worker.waiting_reason is None and worker.alive)
        with caplog.at_level(logging.INFO), database_down(app.db) as refusals:
            _wait(lambda: len(refusals) >= 20)  # twenty looks at the queue refused
        errors: list[Any] = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert errors[0].name == "ophthai_desktop.core.storage.availability"
    finally:
        worker.stop()


def test_the_databases_return_is_said_within_seconds_with_nothing_else_asking_it(
    sqlite_services: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An idle app (no request, no job) makes no call that would find the database back:
    it asks the database itself, so the window's banner and the WebSocket's
    database_availability say so within seconds, and then stops asking."""
    app = sqlite_services
    monkeypatch.setattr(availability, "PROBE_S", 0.05, raising=False)
    monkeypatch.setattr(availability, "QUIET_S", 0.2)
    said: list[bool] = []
    app.bus.subscribe(
        lambda event: (
            said.append(event.available) if isinstance(event, DatabaseAvailabilityChanged) else None
        )
    )
    with database_down(app.db) as refusals:
        with pytest.raises(DatabaseUnavailable):
            app.patients.list_patients()
        _wait(lambda: len(refusals) >= 3)  # asked again meanwhile, and refused
        assert said == [False]
    _wait(lambda: said == [False, True], timeout_s=5.0)
    _wait(lambda: not app.db.availability.probing, timeout_s=5.0)  # no longer asked once it answers
    assert app.db.availability.available


def test_closing_the_app_stops_asking_a_database_that_does_not_answer(
    sqlite_services: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = sqlite_services
    monkeypatch.setattr(availability, "PROBE_S", 0.05, raising=False)
    with database_down(app.db) as refusals:
        with pytest.raises(DatabaseUnavailable):
            app.patients.list_patients()
        _wait(lambda: len(refusals) >= 2)
        assert app.db.availability.probing
        app.close()
        assert not app.db.availability.probing
        asked = len(refusals)
        time.sleep(0.2)  # four periods: nothing more is asked
        assert len(refusals) == asked


def test_asking_a_sqlite_database_takes_its_write_lock(sqlite_services: Application) -> None:
    """The question asked during an outage fails while another program holds the SQLite
    file's write lock: a ``SELECT 1`` is answered without the file, and WAL lets reads
    through a writer's lock, so either would declare the database back while every
    change still fails."""
    import sqlite3

    app = sqlite_services
    app.db.probe()  # a free file answers
    path = app.db.engine.url.database
    assert path
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another program writing for a long time
        started = time.monotonic()
        with pytest.raises(Exception, match="locked"):
            app.db.probe()
        assert time.monotonic() - started < 10  # it waited its own second, not 30 s
        with app.db.engine.connect() as connection:  # other calls keep their patience
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        other.execute("ROLLBACK")
        app.db.probe()
    finally:
        other.close()


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_deadlock_is_a_retry_not_an_outage(app_services: Application) -> None:
    """PostgreSQL ends one of two deadlocked transactions with an error psycopg raises
    as an OperationalError: that caller may try again, but the database answers, so no
    outage is declared (no banner, no database_availability event, no ERROR line)."""
    from sqlalchemy import text

    from ophthai_desktop.core.storage.database import GAVE_WAY

    app = app_services
    said: list[bool] = []
    app.bus.subscribe(
        lambda event: (
            said.append(event.available) if isinstance(event, DatabaseAvailabilityChanged) else None
        )
    )
    with app.db.engine.begin() as connection:
        connection.execute(text("CREATE TABLE deadlock_rows (id integer PRIMARY KEY, n integer)"))
        connection.execute(text("INSERT INTO deadlock_rows VALUES (1, 0), (2, 0)"))
    both_hold_one = threading.Barrier(2, timeout=10)
    outcomes: list[str] = []

    def change(first: int, second: int) -> None:
        try:
            with app.db.session() as session:
                session.execute(
                    text("UPDATE deadlock_rows SET n = n + 1 WHERE id = :i"), {"i": first}
                )
                both_hold_one.wait()
                session.execute(
                    text("UPDATE deadlock_rows SET n = n + 1 WHERE id = :i"), {"i": second}
                )
            outcomes.append("committed")
        except DatabaseUnavailable as exc:
            outcomes.append(str(exc))

    threads = [threading.Thread(target=change, args=pair) for pair in ((1, 2), (2, 1))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == sorted(["committed", GAVE_WAY])
    assert app.db.availability.available
    assert said == []


def test_an_outage_starting_as_the_return_is_said_is_told_after_it() -> None:
    """The probe thread finds the database back while a unit of work on another thread
    finds it gone again: the listeners (the window's banner, the WebSocket's
    database_availability) must hear the two in the order they happened. Told outside
    any lock, the new outage's False could pass the return's True, and the window and
    every client went on saying "available" for the whole of the new outage."""
    now = [1000.0]
    tracked = availability.Availability(clock=lambda: now[0])
    told: list[bool] = []
    tracked.subscribe(told.append)
    tracked.failed("OperationalError")
    now[0] += availability.QUIET_S + 1

    saying_back, go_on = threading.Event(), threading.Event()

    class HoldsTheReturn(logging.Handler):
        """Holds the thread saying that the database is back, after its state changed
        and before its listeners hear it."""

        def handle(self, record: logging.LogRecord) -> bool:  # without the handler's lock
            if "answers again" in record.getMessage():
                saying_back.set()
                go_on.wait(10)
            return True

        def emit(self, record: logging.LogRecord) -> None:
            pass

    logger = logging.getLogger(availability.__name__)
    handler = HoldsTheReturn(logging.WARNING)
    logger.addHandler(handler)
    try:
        back = threading.Thread(target=tracked.answered)
        back.start()
        assert saying_back.wait(10)
        gone = threading.Thread(target=tracked.failed, args=("OperationalError",))
        gone.start()
        gone.join(0.5)  # it tells at once, or waits for the return to be told first
        go_on.set()
        back.join(10)
        gone.join(10)
    finally:
        go_on.set()
        logger.removeHandler(handler)
    assert not tracked.available
    assert told == [False, True, False]


@pytest.mark.skipif(sys.platform == "win32", reason="permission bits do not stop Windows' ACLs")
@pytest.mark.parametrize("which", ["ophthai.db", "ophthai.db-wal"])
def test_a_database_file_this_account_may_not_write_is_refused_at_start(
    tmp_path: Path, which: str, actor: Actor
) -> None:
    """A backup restored read-only: the start went through, then every change answered
    503 "the database is unavailable; try again shortly", which no waiting ends."""
    application = build_application(make_settings(tmp_path))
    application.patients.create_patient({"name": "Test Patient"}, actor=actor)
    application.close()
    data = tmp_path / "data"
    file = data / "ophthai.db"
    (data / "ophthai.db-wal").write_bytes(b"")  # as a crash leaves it
    (data / which).chmod(0o400)
    before = file.read_bytes()
    start = "from ophthai_desktop.core.storage import Database; Database(__import__('sys').argv[1])"
    try:
        done = subprocess.run(
            [*without_root_privilege(), sys.executable, "-c", start, f"sqlite:///{file}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        (data / which).chmod(0o600)

    assert done.returncode != 0
    assert f"the database file {data / which} cannot be written by this account" in (done.stderr)
    assert file.read_bytes() == before


def test_an_upgrade_another_program_keeps_locked_out_names_the_file_and_the_remedy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old database whose write lock an sqlite3 shell held through the start: it
    stopped with only "cannot migrate the database: database is locked"."""
    file = tmp_path / "old.db"
    db = Database(f"sqlite:///{file.as_posix()}")
    db.upgrade("0004")
    db.dispose()
    monkeypatch.setattr(database_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    other = sqlite3.connect(file, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageError) as refused:
            db.upgrade()
        other.execute("ROLLBACK")
    finally:
        other.close()

    message = refused.value.message
    assert f"another program kept the database file {file} locked" in message
    assert "Close that program, then start OphthAI again." in message
    db.upgrade()  # closed: the next start goes through
    db.close()


def _busy_snapshot(folder: Path) -> sqlite3.OperationalError:
    """SQLite's own SQLITE_BUSY_SNAPSHOT: a read transaction of a WAL database that tries
    to write after another connection wrote ("database is locked", extended code 517)."""
    file = folder / "snapshot.db"
    first = sqlite3.connect(file, isolation_level=None)
    second = sqlite3.connect(file, isolation_level=None)
    try:
        first.execute("PRAGMA journal_mode=WAL")
        first.execute("CREATE TABLE t (x)")
        first.execute("BEGIN")
        first.execute("SELECT * FROM t").fetchall()
        second.execute("INSERT INTO t VALUES (1)")
        try:
            first.execute("INSERT INTO t VALUES (2)")
        except sqlite3.OperationalError as exc:
            return exc
        raise AssertionError("SQLite let a stale snapshot write")
    finally:
        first.close()
        second.close()


def _busy_recovery() -> sqlite3.OperationalError:
    """SQLITE_BUSY_RECOVERY (another connection recovers the WAL), as pysqlite raises it;
    not made on demand by SQLite itself."""
    exc = sqlite3.OperationalError("database is locked")
    exc.sqlite_errorcode = sqlite3.SQLITE_BUSY_RECOVERY  # type: ignore[attr-defined]
    exc.sqlite_errorname = "SQLITE_BUSY_RECOVERY"  # type: ignore[attr-defined]
    return exc


@pytest.mark.parametrize("variant", ["SQLITE_BUSY_SNAPSHOT", "SQLITE_BUSY_RECOVERY"])
def test_an_upgrade_held_off_by_a_busy_variant_names_the_other_program_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str
) -> None:
    """SQLite's extended SQLITE_BUSY codes say "database is locked" as plain SQLITE_BUSY
    does; the start fell back to the bare "cannot migrate the database: database is
    locked" for them instead of naming the file and the remedy."""
    from alembic import command
    from sqlalchemy.exc import OperationalError

    orig = _busy_snapshot(tmp_path) if variant == "SQLITE_BUSY_SNAPSHOT" else _busy_recovery()
    assert orig.sqlite_errorname == variant
    file = tmp_path / "old.db"
    db = Database(f"sqlite:///{file.as_posix()}")
    db.upgrade("0004")

    def held_off(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("upgrade", {}, orig)

    monkeypatch.setattr(command, "upgrade", held_off)
    with pytest.raises(StorageError) as refused:
        db.upgrade()
    db.close()

    message = refused.value.message
    assert f"another program kept the database file {file} locked" in message
    assert "Close that program, then start OphthAI again." in message
