"""The database: engine, per-operation sessions and schema upgrades.

SQLite (the default, a file in the data folder) runs in WAL mode with foreign keys
enforced; any other SQLAlchemy URL (PostgreSQL) is used as given. The schema is owned by
Alembic: :meth:`Database.upgrade` brings any database to the newest revision and the
application calls it at start.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from ophthai_desktop.core.errors import (
    ChangeRolledBack,
    DatabaseFileGone,
    DatabaseUnavailable,
    NoRoom,
    StorageError,
)
from ophthai_desktop.core.storage.availability import Availability
from ophthai_desktop.core.storage.folders import cannot_create
from ophthai_desktop.core.storage.private import (
    PRIVATE_FILE_MODE,
    SQLITE_COMPANIONS,
    make_database_private,
)

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
#: PostgreSQL's SQLSTATE for "permission denied".
INSUFFICIENT_PRIVILEGE = "42501"
#: PostgreSQL's SQLSTATE for "disk full" (``disk_full``).
DISK_FULL = "53100"
#: SQLite's result code for "database or disk is full" (``SQLITE_FULL``).
SQLITE_FULL = 13
#: SQLite's errors that a full disk gives too, besides SQLITE_FULL: writing, growing or
#: syncing a file (the WAL and its shared-memory index grow as changes come), and a file
#: it cannot open ("unable to open database file": the WAL or its index not created).
#: The code does not say why (no errno), so they are a full disk only where the
#: database's disk is found to have no room; otherwise an outage, as ever.
SQLITE_FULL_DISK_SUSPECTS = frozenset(
    {
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_IOERR_WRITE,
        sqlite3.SQLITE_IOERR_FSYNC,
        sqlite3.SQLITE_IOERR_DIR_FSYNC,
        sqlite3.SQLITE_IOERR_TRUNCATE,
        sqlite3.SQLITE_IOERR_SHMOPEN,
        sqlite3.SQLITE_IOERR_SHMSIZE,
        sqlite3.SQLITE_IOERR_SHMMAP,
        sqlite3.SQLITE_CANTOPEN,
    }
)
#: Less room than this for the app's account on the database's disk counts as none: a
#: change needs a few pages, the WAL's index grows 32 KiB at a time.
NO_ROOM_MARGIN_BYTES = 1024 * 1024

#: SQLite's primary result code for "database is locked" (``SQLITE_BUSY``); its extended
#: codes (``SQLITE_BUSY_RECOVERY``, ``SQLITE_BUSY_SNAPSHOT``, ``SQLITE_BUSY_TIMEOUT``)
#: carry it in their low byte.
SQLITE_BUSY = 5

#: SQLite's answers for a file that is there but that it cannot read as a database.
DAMAGED_SQLITE = frozenset({"SQLITE_NOTADB", "SQLITE_CORRUPT"})

#: What a caller is told when the database's disk has no room for a change.
NO_ROOM_MESSAGE = "cannot write to the database: its disk is full"

#: How often the log says again that the database's disk is full while changes fail.
NO_ROOM_REMINDER_S = 60.0


#: The databases OphthAI's tables, migrations and locking are made and tested for
#: (another that SQLAlchemy reaches failed at start on a driver it lacks, "No module
#: named 'MySQLdb'", or later on SQL these two speak).
SUPPORTED_BACKENDS = frozenset({"sqlite", "postgresql"})


def _normalise_url(url: str) -> str:
    """Prefer psycopg 3 for plain ``postgresql://`` URLs (the seed's form)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _parse_url(url: str) -> URL:
    """The URL, or a :class:`StorageError` that never quotes it (it holds the password).

    A password's ``@`` must be written ``%40``: otherwise the URL reads as a password cut
    at the ``@`` and a host (or a database name) made of the rest, which the start would
    then show and log as the database's address.
    """
    try:
        parsed = make_url(_normalise_url(url))
    except ArgumentError as exc:
        raise StorageError(
            "the database URL cannot be read: write it as "
            "postgresql://user:password@host/database (or leave it unset for SQLite)"
        ) from exc
    backend = parsed.get_backend_name()
    if backend not in SUPPORTED_BACKENDS:
        raise StorageError(
            f"the database URL names a {backend} database; OphthAI runs on SQLite (leave "
            "DATABASE_URL unset) or PostgreSQL (postgresql://user:password@host/database)"
        )
    if backend != "sqlite" and "@" in f"{parsed.host}{parsed.database}":
        raise StorageError(
            "the database URL has an @ after its user and password: write an @ in the "
            "password as %40 (likewise / as %2F, : as %3A and % as %25)"
        )
    return parsed


class Database:
    """Owns the engine; hands out one short-lived session per unit of work."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = _parse_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        kwargs: dict[str, Any] = {"echo": echo}
        #: The SQLite file (a plain path), and its (st_dev, st_ino) once first opened:
        #: see :meth:`_check_file`.
        self._file: Path | None = None
        self._identity: tuple[int, int] | None = None
        self._file_gone = False
        if self.is_sqlite:
            database = self.url.database
            if database and database != ":memory:":
                folder = Path(database).parent
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise cannot_create("the database's folder", folder, exc) from exc
                if not database.startswith("file:"):  # an SQLite URI names no plain path
                    make_database_private(Path(database))
                    _refuse_read_only(Path(database))
                    self._file = Path(database).absolute()
            # Sessions never cross threads, but the pool hands connections to any thread.
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs["pool_size"] = 8
            kwargs["max_overflow"] = 16
        else:
            kwargs["pool_pre_ping"] = True
            kwargs["pool_size"] = 8
            kwargs["max_overflow"] = 16
            # The URL's own settings win (a clinic may tune them for its network), and
            # so do those set for libpq in the environment (PGCONNECT_TIMEOUT): a
            # setting passed to the connection overrides the environment's.
            kwargs["connect_args"] = {
                name: value
                for name, value in _postgres_network_limits().items()
                if name not in self.url.query
                and not os.environ.get(LIBPQ_ENVIRONMENT.get(name, ""))
            }
        try:
            self.engine: Engine = create_engine(self.url, **kwargs)
        except (SQLAlchemyError, ImportError) as exc:
            raise StorageError(f"cannot open the database: {exc}") from exc
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_on_connect)
            if self._file is not None:
                # Weakly: SQLAlchemy keeps the dialect, whose events these are, in the
                # model classes' statement caches for the process, and a closed
                # Database (its engine, pool, the services around it) stayed with it.
                event.listen(self.engine, "do_connect", _weakly(self._open_the_same_file))
                event.listen(self.engine, "connect", _weakly(self._note_the_file))
                event.listen(self.engine, "checkout", _weakly(self._on_checkout))
        else:
            event.listen(self.engine, "connect", _postgres_on_connect)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        #: Whether the database answers; says so once in the log (see its module), and
        #: asks it with :meth:`probe` while it does not.
        self.availability = Availability(probe=self.probe)
        self._no_room_said_at: float | None = None
        #: The connection that holds :data:`IN_USE_LOCK` (PostgreSQL; see :meth:`hold`).
        self._holder: Connection | None = None
        self._file_lock: FileLock | None = None

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for one unit of work: committed on success, rolled back on error.

        Database failures that are about the environment (locked, unreachable) become
        :class:`DatabaseUnavailable`, said in the log by :attr:`availability` (once per
        outage, not per call). A full disk becomes :class:`NoRoom`, no outage: the
        database answers, and changes fail until someone frees space, however long
        that takes (said in the log at most every :data:`NO_ROOM_REMINDER_S`).
        Everything else propagates unchanged.
        """
        session = self._sessions()
        try:
            yield session
            began = session.in_transaction()  # it reached the database
            session.commit()
            if began:
                self.availability.answered()
        except (OperationalError, DBAPIError) as exc:
            session.rollback()
            self._check_file()  # "unable to open database file": it is gone (mode=rw)
            if _gave_way(exc) or _waited_too_long(exc):
                # PostgreSQL chose this transaction to end a deadlock, could not
                # serialise it, or ended it after POSTGRES_LOCK_TIMEOUT_MS waiting for
                # another connection's lock: the server answers, and the same work may
                # well pass now.
                log.warning("the database rolled a transaction back (%s)", type(exc.orig).__name__)
                raise ChangeRolledBack(LOCK_WAITED if _waited_too_long(exc) else GAVE_WAY) from exc
            if self._disk_full(exc):
                self._say_no_room(type(exc.orig).__name__)
                raise NoRoom(NO_ROOM_MESSAGE) from exc
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                self.availability.failed(type(exc.orig).__name__)
                raise DatabaseUnavailable() from exc
            raise
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    def _check_file(self) -> None:
        """Raise :class:`DatabaseFileGone` where the SQLite file opened at start is no
        longer at its path (deleted, or another file there: a backup restored over it):
        SQLite would go on writing into the removed file, which vanishes at quit. One
        ``stat`` per connection checkout (microseconds); said in the log once, an outage
        that lasts until the app is started again (the same file cannot come back, and a
        restored copy may not hold what this run stored or queued). Any thread."""
        if self._identity is None or self._file is None:
            return
        if not self._file_gone:
            try:
                found = os.stat(self._file)
            except FileNotFoundError:
                pass
            except OSError:
                return  # cannot tell (no right to look): SQLite's own errors say
            else:
                if (found.st_dev, found.st_ino) == self._identity:
                    return
            self._file_gone = True
            log.error(
                "the database file %s was deleted or replaced while OphthAI ran: nothing "
                "is saved until OphthAI is started again",
                self._file,
            )
        self.availability.failed(
            DatabaseFileGone.__name__, outage=DatabaseFileGone.OUTAGE, until=DatabaseFileGone.UNTIL
        )
        raise DatabaseFileGone(str(self._file))

    @property
    def outage_cause(self) -> str | None:
        """What to tell a person about an outage whose cause is known (the SQLite file
        deleted or replaced), or None. No I/O: any thread, the GUI's too."""
        if not self._file_gone:
            return None
        return DatabaseFileGone(str(self._file)).message

    def _note_the_file(self, _dbapi_connection: Any, _record: Any) -> None:
        """Note which file the first connection opened (or created)."""
        if self._identity is None and self._file is not None:
            with suppress(OSError):
                found = os.stat(self._file)
                self._identity = (found.st_dev, found.st_ino)

    def _on_checkout(self, _dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        """Before a unit of work uses a connection: is its file still at the path?"""
        self._check_file()

    def _open_the_same_file(
        self, _dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]
    ) -> None:
        """Once the file was opened, a new connection opens that file or none: SQLite
        would create an empty one where it is missing (then "no such table")."""
        if self._identity is None or self._file is None:
            return
        self._check_file()
        cargs[0] = f"{self._file.as_uri()}?mode=rw"
        cparams["uri"] = True

    def _disk_full(self, exc: DBAPIError) -> bool:
        """Whether ``exc`` says the database's disk has no room: SQLite's SQLITE_FULL
        (a full disk, or a ``max_page_count`` reached), PostgreSQL's ``disk_full``, or
        one of SQLite's errors that a full disk gives too
        (:data:`SQLITE_FULL_DISK_SUSPECTS`) while the database's disk has no room."""
        orig = exc.orig
        if getattr(orig, "sqlstate", None) == DISK_FULL:
            return True
        code = getattr(orig, "sqlite_errorcode", None)
        if not isinstance(code, int):
            return False
        if code & 0xFF == SQLITE_FULL:
            return True
        return code in SQLITE_FULL_DISK_SUSPECTS and self._disk_has_no_room()

    def _disk_has_no_room(self) -> bool:
        """Whether the disk under the SQLite file has less than
        :data:`NO_ROOM_MARGIN_BYTES` left for this account (False where that cannot
        be told: an in-memory database, a folder that is gone)."""
        folder = self.folder()
        if folder is None:
            return False
        try:
            return shutil.disk_usage(folder).free < NO_ROOM_MARGIN_BYTES
        except OSError:
            return False

    def folder(self) -> Path | None:
        """The folder that holds the SQLite file (None for PostgreSQL, or an SQLite
        database in memory or named by a URI)."""
        database = self.url.database if self.is_sqlite else None
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(database).absolute().parent

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A :meth:`session` whose reads all see the database at one moment: for a read
        in several queries that a caller takes as one picture (reads only).

        Without it each SELECT sees its own moment: pysqlite begins a transaction only
        before a change, so a read runs in autocommit, and PostgreSQL's READ COMMITTED
        takes a snapshot per statement. Here SQLite reads inside a transaction begun
        explicitly (in WAL mode its snapshot is taken at the first read and writers go on
        meanwhile), and PostgreSQL reads at REPEATABLE READ (one snapshot from the first
        statement). Every other session keeps beginning at its first change: beginning
        all of them explicitly on SQLite would have a session that reads, then writes,
        fail at once with "database is locked" when another wrote in between.
        """
        with self.session() as session:
            if self.is_sqlite:
                session.connection().exec_driver_sql("BEGIN")
            else:
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    def _say_no_room(self, kind: str) -> None:
        """Log that a change failed for want of room: the first time, then at most
        every :data:`NO_ROOM_REMINDER_S` while it goes on (the worker and the watch
        folder try again every few seconds). Any thread."""
        now = time.monotonic()
        said = self._no_room_said_at
        if said is not None and now - said < NO_ROOM_REMINDER_S:
            return
        self._no_room_said_at = now
        log.error(
            "the database's disk is full (%s): changes fail until space is freed on it",
            kind,
        )

    def upgrade(self, revision: str = "head") -> None:
        """Create or migrate the schema to ``revision`` (the newest by default)."""
        from alembic import command
        from alembic.config import Config
        from alembic.util import CommandError

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        config.set_main_option("path_separator", "os")
        try:
            connection = self.engine.connect()
        except DBAPIError as exc:
            if self._disk_full(exc):
                raise NoRoom(self._no_room_to_migrate()) from exc
            raise StorageError(self._unreachable(exc)) from exc
        behind = False  # a SQLite schema older than this version's (to copy first)
        try:
            with connection:
                if self.is_sqlite:
                    # A migration that builds a table again drops the old one, and with
                    # foreign keys on, dropping a table deletes the rows that refer to
                    # it. The pragma only takes effect outside a transaction.
                    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
                    behind = _revisions(connection) != _head()
                    connection.commit()
                try:
                    with connection.begin():
                        if self.is_sqlite:
                            # pysqlite begins a transaction only before INSERT, UPDATE
                            # or DELETE: a migration's CREATE or ALTER before its first
                            # such statement was committed on its own, so an upgrade
                            # that failed half-way (a full disk) kept those while its
                            # revision stayed behind, and every later start failed on
                            # them ("duplicate column name"). Begun here, the upgrade is
                            # one transaction; IMMEDIATE where there is one to make, so
                            # that two starting at once take turns (the second finds
                            # the schema made) instead of both making it.
                            connection.exec_driver_sql("BEGIN IMMEDIATE" if behind else "BEGIN")
                        config.attributes["connection"] = connection
                        before = _revisions(connection)
                        # Found behind, but another start may have upgraded it while
                        # this one waited for the lock: nothing to copy then.
                        if self.is_sqlite and behind and before != _head():
                            self._back_up_before_upgrading(before)
                        command.upgrade(config, revision)
                        after = _revisions(connection)
                    if not before and after:  # said once committed
                        log.info("database created at revision %s", after)
                    elif after != before:
                        log.info("database upgraded from revision %s to %s", before, after)
                    if self.is_sqlite:
                        broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                        if broken:
                            log.error("after migrating, %d rows refer to missing rows", len(broken))
                finally:
                    if self.is_sqlite:
                        connection.rollback()
                        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                        connection.commit()
        except DBAPIError as exc:
            if self._disk_full(exc):
                raise NoRoom(self._no_room_to_migrate()) from exc
            damaged = self._damaged(exc)
            if damaged:
                raise StorageError(damaged) from exc
            if self.is_sqlite and _sqlite_busy(exc):
                raise StorageError(self._held_elsewhere()) from exc
            if isinstance(exc, OperationalError):
                raise StorageError(f"cannot migrate the database: {exc.orig}") from exc
            raise StorageError(_migration_failed(exc)) from exc
        except CommandError as exc:
            raise self._refusal(exc) from exc

    def _no_room_to_migrate(self) -> str:
        """Why the start stops on a full disk, and where that disk is: the migration
        ran in one transaction, rolled back, so the database is as it was."""
        folder = self.folder()
        where = f"the disk that holds it ({folder})" if folder else "its server's disk"
        return (
            f"cannot migrate the database: {where} is full. Free space on it, then start "
            "OphthAI again; the database was left as it was."
        )

    def _back_up_before_upgrading(self, revision: str) -> None:
        """Copy the SQLite file, as it is at ``revision``, to
        ``<file>.before-upgrade-from-<revision>`` beside it before its schema is upgraded
        (run with the upgrade's write lock held: no change lands in between). An upgrade
        goes one way: a version that turns out wrong for the clinic can be left, with
        this copy, for the one before. Nothing to copy for a new database, one at the
        newest revision, or one a newer version has upgraded (refused unchanged), nor
        for a database that is not a plain file.

        Raises:
            NoRoom: Its disk has no room for the copy (nothing was changed).
            StorageError: The copy cannot be made otherwise.
        """
        if self._file is None or not revision or not _known(revision):
            return
        name = revision.replace(", ", "+")
        target = self._file.with_name(f"{self._file.name}.before-upgrade-from-{name}")
        staged = target.with_name(f"{target.name}.part")
        try:
            with suppress(FileNotFoundError):
                staged.unlink()
            os.close(os.open(staged, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE))
            # By its path, not a file: URI: on Windows a file on a share has the URI
            # file://server/share/..., whose authority SQLite refuses.
            source = sqlite3.connect(self._file)
            try:
                source.execute("PRAGMA query_only = ON")
                copy = sqlite3.connect(staged)
                try:
                    source.backup(copy)
                finally:
                    copy.close()
            finally:
                source.close()
            # Opened for writing: Windows' fsync (FlushFileBuffers) refuses a handle
            # opened read-only (EBADF), and every upgrade there stopped the start.
            with open(staged, "r+b") as written:
                os.fsync(written.fileno())
            os.replace(staged, target)
        except (OSError, sqlite3.Error) as exc:
            with suppress(OSError):
                staged.unlink()
            why = getattr(exc, "strerror", None) or str(exc)
            full = getattr(exc, "errno", None) == errno.ENOSPC or (
                getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_FULL
            )
            message = (
                f"cannot upgrade the database: its copy from before the upgrade, {target}, "
                f"cannot be written ({why}). "
                + ("Free space on that disk, then" if full else "Mend that, then")
                + " start OphthAI again; the database was left as it was."
            )
            raise (NoRoom if full else StorageError)(message) from exc
        log.info("database copied to %s before upgrading it from revision %s", target, name)

    def _held_elsewhere(self) -> str:
        """Why the start stops where another program kept the SQLite file's write lock
        past :data:`SQLITE_BUSY_TIMEOUT_MS` while the schema needed upgrading (it said
        only "database is locked")."""
        return (
            f"cannot migrate the database: another program kept the database file "
            f"{self.url.database} locked for {SQLITE_BUSY_TIMEOUT_MS // 1000} s (an sqlite3 "
            "shell or a tool with a change open, another OphthAI given this database); "
            "nothing in it was changed. Close that program, then start OphthAI again."
        )

    def _unreachable(self, exc: DBAPIError) -> str:
        """Why the start could not connect (the server down, a wrong password, no such
        database), naming the database without its password: nothing was migrated."""
        damaged = self._damaged(exc)
        if damaged:
            return damaged
        said = str(exc.orig).strip() or type(exc.orig).__name__
        return f"cannot connect to the database {self.describe()}: {said}"

    def _damaged(self, exc: DBAPIError) -> str | None:
        """Why the start stops on an SQLite file that SQLite cannot read as a database
        (another file saved over it, a disk error), or None for another error. Not "cannot
        connect" (which sends people after a server) nor "cannot migrate"."""
        if not self.is_sqlite or getattr(exc.orig, "sqlite_errorname", "") not in DAMAGED_SQLITE:
            return None
        return (
            f"the database file {self.url.database} is damaged or not an SQLite database "
            f"({exc.orig}); nothing in it was changed. Restore it from a backup, or move it "
            "out of the data folder to start OphthAI with an empty database."
        )

    def _refusal(self, exc: Exception) -> StorageError:
        """Why Alembic refused to upgrade: most often a database that a newer version of
        the app has upgraded past the revisions this one knows (nothing was changed)."""
        from alembic.migration import MigrationContext
        from alembic.script import ScriptDirectory

        script = ScriptDirectory(str(MIGRATIONS_DIR))
        known = {s.revision for s in script.walk_revisions()}
        with self.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_heads()
        unknown = sorted(set(current) - known)
        if not unknown:
            return StorageError(f"cannot migrate the database: {exc}")
        return StorageError(
            f"the database {self.describe()} was upgraded by a newer version of OphthAI "
            f"Desktop (its schema is at revision {', '.join(unknown)}; this version knows "
            f"revisions up to {script.get_current_head()}). Nothing was changed: run that "
            "newer version, or point this one at another database."
        )

    def probe(self) -> None:
        """Ask the database the least that proves it takes changes again; raises when it
        does not.

        On PostgreSQL a ``SELECT 1`` (the server answers). On SQLite, whose library
        answers ``SELECT 1`` without the file, and whose readers a writer's lock does not
        stop (WAL), the write lock is taken and given back at once, waiting at most
        :data:`SQLITE_PROBE_WAIT_MS` for it. A file deleted or replaced never answers
        again (see :meth:`_check_file`, on every checkout).
        """
        with self.engine.connect() as connection:
            if not self.is_sqlite:
                connection.exec_driver_sql("SELECT 1")
                return
            connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_PROBE_WAIT_MS}")
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                connection.exec_driver_sql("ROLLBACK")
            finally:
                connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")

    def hold(self, data_dir: Path | None = None) -> None:
        """Take the database for this process, or raise :class:`StorageError` where
        another OphthAI (another workstation, another data folder) has it: two would each
        queue the other's running analyses again at start and run them twice, and neither
        can read the images the other stored in its own data folder. On PostgreSQL a
        session advisory lock, kept on a connection of its own until :meth:`close` and
        taken again when the database answers after an outage (the server's restart ends
        the session). A SQLite file in the data folder ``data_dir`` is held by the
        folder's lock; one elsewhere (``DATABASE_URL`` naming a file that two data folders
        could share) by the system's lock on a file beside it (:meth:`_hold_file`)."""
        if self.is_sqlite:
            self._hold_file(data_dir)
            return
        if not self._take():
            raise StorageError(
                f"another OphthAI (on another workstation, or on another data folder) is "
                f"using the database {self.describe()}: one OphthAI at a time per database. "
                "Stop that one, or point this one at a database of its own."
            )
        self.availability.subscribe(self._hold_again)

    def _hold_file(self, data_dir: Path | None) -> None:
        """Lock ``<file>.lock`` beside a SQLite file outside ``data_dir`` for as long as
        this process runs (the system lets go of it when the process ends, a crash
        included), or raise :class:`StorageError` where another OphthAI holds it."""
        if self._file is None or data_dir is None:
            return
        if self._file.resolve().is_relative_to(data_dir.resolve()):
            return
        lock_file = Path(f"{self._file}.lock")
        # Never the soft lock (a file whose presence is the lock): a crash would leave
        # it, and every later start would be refused.
        lock = FileLock(
            lock_file,
            timeout=0,
            mode=PRIVATE_FILE_MODE,
            thread_local=False,
            fallback_to_soft=False,
        )
        try:
            lock.acquire()
        except Timeout:
            raise StorageError(
                f"another OphthAI (with another data folder, or on another computer "
                f"sharing the folder) is using the database file {self._file}: one "
                "OphthAI at a time per database. Stop that one, or point this one at a "
                "database of its own."
            ) from None
        except OSError as exc:
            raise StorageError(
                f"the database file's lock {lock_file} cannot be made "
                f"({exc.strerror or exc}): OphthAI needs to write in the database's folder"
            ) from exc
        self._file_lock = lock

    def _take(self) -> bool:
        """Whether this process now holds :data:`IN_USE_LOCK` (on a new connection)."""
        try:
            connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        except DBAPIError as exc:
            raise StorageError(self._unreachable(exc)) from exc
        connection.detach()  # not the pool's: it lives as long as the lock
        try:
            taken = connection.exec_driver_sql(
                f"SELECT pg_try_advisory_lock({IN_USE_LOCK})"
            ).scalar_one()
        except BaseException:
            connection.close()
            raise
        if not taken:
            connection.close()
            return False
        self._holder = connection
        return True

    def _hold_again(self, available: bool) -> None:
        """After an outage, take the lock again where its connection was lost."""
        holder = self._holder
        if not available or holder is None:
            return
        try:
            holder.exec_driver_sql("SELECT 1")
            return
        except DBAPIError:
            holder.invalidate()
            self._holder = None
        try:
            if self._take():
                return
        except (DBAPIError, StorageError):
            return  # down again: said as such; taken at its next return
        log.error(
            "another OphthAI took the database while it did not answer: stop one of them "
            "(one OphthAI at a time per database)"
        )

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def close(self) -> None:
        """Stop asking a database that does not answer, let go of it (:meth:`hold`), and
        close every pooled connection: the app is closing."""
        self.availability.close()
        holder, self._holder = self._holder, None
        if holder is not None:
            with suppress(DBAPIError):  # a lost session holds no lock
                holder.close()
        file_lock, self._file_lock = self._file_lock, None
        if file_lock is not None:
            file_lock.release()
        self.dispose()

    def describe(self) -> str:
        """The URL without its password, safe to show and log."""
        return self.url.render_as_string(hide_password=True)


def _weakly(method: Callable[..., None]) -> Callable[..., None]:
    """``method`` as an event listener that does not keep its object alive (and does
    nothing once that object is gone)."""
    held = weakref.WeakMethod(method)

    def listener(*args: Any) -> None:
        bound = held()
        if bound is not None:
            bound(*args)

    return listener


def _sqlite_busy(exc: DBAPIError) -> bool:
    """Whether ``exc`` is SQLite's "database is locked": ``SQLITE_BUSY`` or one of its
    extended codes (another connection recovering the WAL, a snapshot gone stale), by
    its result code; by its words where the driver gives no code."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF == SQLITE_BUSY
    return str(exc.orig).startswith("database is locked")


def _revisions(connection: Connection) -> str:
    """The schema's Alembic revision ("" for an empty database), for the log."""
    from alembic.migration import MigrationContext

    return ", ".join(sorted(MigrationContext.configure(connection).get_current_heads()))


def _refuse_read_only(database: Path) -> None:
    """Raise :class:`StorageError` where this account may not write the SQLite file or
    a companion beside it (a backup restored with the wrong permissions, a read-only
    disk): SQLite opened it read-only and every change failed as an outage, a 503 "try
    again shortly", which no waiting ends."""
    for path in (database, *(Path(f"{database}{suffix}") for suffix in SQLITE_COMPANIONS)):
        if path.exists() and not os.access(path, os.W_OK):
            raise StorageError(
                f"the database file {path} cannot be written by this account (a copy "
                "restored with the wrong permissions?); nothing in it was changed. Give "
                "this account the right to write it, then start OphthAI again."
            )


def _known(revisions: str) -> bool:
    """Whether this version knows every revision of ``revisions`` (as
    :func:`_revisions` writes them): not where a newer version upgraded the database."""
    from alembic.script import ScriptDirectory

    known = {s.revision for s in ScriptDirectory(str(MIGRATIONS_DIR)).walk_revisions()}
    return set(revisions.split(", ")) <= known


def _head() -> str:
    """The newest revision this version knows, as :func:`_revisions` writes it."""
    from alembic.script import ScriptDirectory

    return ", ".join(sorted(ScriptDirectory(str(MIGRATIONS_DIR)).get_heads()))


def _migration_failed(exc: DBAPIError) -> str:
    """What a migration's database error says, with the remedy for the usual one: a
    PostgreSQL role that may not create tables (PostgreSQL 15 and later give that right
    in a new database's ``public`` schema only to the database's owner)."""
    said = str(exc.orig).splitlines()[0] if str(exc.orig) else type(exc.orig).__name__
    if getattr(exc.orig, "sqlstate", None) == INSUFFICIENT_PRIVILEGE:
        return (
            f"cannot migrate the database: {said}. The database's user must be allowed to "
            "create tables: make it the database's owner (CREATE DATABASE ... OWNER ...), "
            "or GRANT CREATE ON SCHEMA public TO it."
        )
    return f"cannot migrate the database: {said}"


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


#: The PostgreSQL advisory lock (its key, "OphthAI" in ASCII) that the running OphthAI
#: holds on its database (see :meth:`Database.hold`).
IN_USE_LOCK = 0x4F706874684149

#: How long a statement waits for another connection's lock on a SQLite file.
SQLITE_BUSY_TIMEOUT_MS = 30_000

#: How long the outage probe waits for it (it asks again every few seconds).
SQLITE_PROBE_WAIT_MS = 1_000

#: How long a PostgreSQL statement waits for another connection's lock (its
#: ``lock_timeout``), as SQLite's does for the file's: without it a lock held elsewhere (a
#: maintenance command, a session left open in a transaction) held every request and the
#: worker that needed it for as long as it lasted.
POSTGRES_LOCK_TIMEOUT_MS = SQLITE_BUSY_TIMEOUT_MS

#: How long a connection to PostgreSQL may take to be made (libpq's
#: ``connect_timeout``): a server whose network drops packets (a host switched off, a
#: VPN down) held the start, and every request that needed a new connection, for the
#: minutes the system's TCP gives up after.
POSTGRES_CONNECT_TIMEOUT_S = 10

#: How long data sent to PostgreSQL may go unacknowledged before the connection counts as
#: lost (``tcp_user_timeout``), and TCP keepalives on idle connections: a server gone
#: from the network mid-request is noticed in seconds, not the system's 15 minutes.
POSTGRES_TCP_USER_TIMEOUT_MS = 20_000

#: The environment variables through which libpq takes the settings of
#: :func:`_postgres_network_limits` (it has none for the others).
LIBPQ_ENVIRONMENT = {"connect_timeout": "PGCONNECT_TIMEOUT"}

#: PostgreSQL's SQLSTATE for a lock not granted within ``lock_timeout``.
LOCK_NOT_AVAILABLE = "55P03"

#: What a caller is told when the database ended its transaction to let another through.
GAVE_WAY = "the database ended this change to let a conflicting one through; try again"

#: What a caller is told when its statement waited past POSTGRES_LOCK_TIMEOUT_MS.
LOCK_WAITED = (
    "the database is busy: another connection held a lock this needs for too long; "
    "try again shortly"
)


def _gave_way(exc: DBAPIError) -> bool:
    """Whether ``exc`` is PostgreSQL's "transaction rollback" class (SQLSTATE 40: a
    deadlock, a serialisation failure), which psycopg raises as an OperationalError
    although the server answers: not an outage."""
    return str(getattr(exc.orig, "sqlstate", "") or "").startswith("40")


def _waited_too_long(exc: DBAPIError) -> bool:
    """Whether ``exc`` is PostgreSQL ending a statement that waited past its
    ``lock_timeout`` for another connection's lock (an OperationalError too, although
    the server answers: not an outage)."""
    return getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


def _postgres_network_limits() -> dict[str, int]:
    """libpq's settings that bound how long a connection waits on the network
    (:data:`POSTGRES_CONNECT_TIMEOUT_S`, :data:`POSTGRES_TCP_USER_TIMEOUT_MS`)."""
    return {
        "connect_timeout": POSTGRES_CONNECT_TIMEOUT_S,
        "tcp_user_timeout": POSTGRES_TCP_USER_TIMEOUT_MS,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 5,
        "keepalives_count": 3,
    }


def _postgres_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # Set on the session (committed, so the pool's rollbacks keep it), not through the
    # URL's options, which a clinic's URL may set for its own reasons; and only where the
    # session has no wait of its own (0, PostgreSQL's default): the URL's
    # ``options=-c lock_timeout=...``, PGOPTIONS, or the role's or database's settings
    # were overridden.
    with dbapi_connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, false)"
            " WHERE current_setting('lock_timeout') = '0'",
            (str(int(POSTGRES_LOCK_TIMEOUT_MS)),),
        )
    dbapi_connection.commit()


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLite's own lower() (and so ILIKE, which SQLAlchemy writes as lower() LIKE
    # lower()) folds ASCII letters only: "ångström" would not find "Ångström". Python's
    # folds every script, as PostgreSQL's does. No index uses lower().
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()
