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
