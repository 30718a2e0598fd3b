"""A database that does not answer, for tests: its server stopped or restarting."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

from sqlalchemy import event

from ophthai_desktop.core.storage.database import Database


@contextlib.contextmanager
def database_down(db: Database, *, times: int | None = None) -> Iterator[list[int]]:
    """Every new connection is refused meanwhile (the pool is emptied first), or only
    the first ``times``; yields the list of refusals, one entry each, so a test can wait
    for the app to have tried."""
    refusals: list[int] = []

    def refuse(*_args: Any) -> None:
        if times is not None and len(refusals) >= times:
            return
        refusals.append(1)
        raise sqlite3.OperationalError("unable to open database file")

    event.listen(db.engine, "do_connect", refuse)
    db.dispose()
    try:
        yield refusals
    finally:
        event.remove(db.engine, "do_connect", refuse)


@contextlib.contextmanager
def database_full(db: Database) -> Iterator[None]:
    """The disk under the SQLite file full meanwhile: every connection (the pool is
    emptied first) may grow the file by one page at most (``PRAGMA max_page_count``),
    after which a change that needs another fails as on a full disk, with SQLITE_FULL
    ("database or disk is full")."""
    with db.engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()

    def limit(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute(f"PRAGMA max_page_count={pages + 1}")

    event.listen(db.engine, "connect", limit)
    db.dispose()
    try:
        yield
    finally:
        event.remove(db.engine, "connect", limit)
        db.dispose()


#: SQLite's result code for a full disk (a write that needs room the disk does not give).
SQLITE_FULL = 13


@contextlib.contextmanager
def database_writes_refused(db: Database) -> Iterator[None]:
    """The disk under the SQLite file full meanwhile, for every change: each statement
    that writes (INSERT, UPDATE, DELETE) fails as SQLite fails when it cannot grow the
    file or its write-ahead log, with SQLITE_FULL ("database or disk is full"); reads
    go on. (:func:`database_full` refuses only changes that need a new page: an update
    in place passes it.)"""

    def refuse(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = SQLITE_FULL  # type: ignore[attr-defined]
            raise error

    event.listen(db.engine, "before_cursor_execute", refuse)
    try:
        yield
    finally:
        event.remove(db.engine, "before_cursor_execute", refuse)
