"""Races made to happen: another thread's change lands inside a transaction, right
after it has read what it decides on."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy
from sqlalchemy.orm import Session

from ophthai_desktop.bootstrap import Application


@contextlib.contextmanager
def meanwhile(app: Application, marker: str, action: Callable[[], None]) -> Iterator[None]:
    """Runs ``action`` on another thread once this thread has run a statement holding
    ``marker`` (has read what it decides on), and goes on when ``action`` is done or,
    locked out by this thread's transaction, after a second (it then runs on after
    the commit and is waited for on leaving)."""
    caller = threading.get_ident()
    other: list[threading.Thread] = []

    def after_execute(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if threading.get_ident() == caller and not other and marker in statement:
            other.append(threading.Thread(target=action))
            other[0].start()
            other[0].join(1.0)

    sqlalchemy.event.listen(app.db.engine, "after_cursor_execute", after_execute)
    try:
        yield
    finally:
        sqlalchemy.event.remove(app.db.engine, "after_cursor_execute", after_execute)
    assert other, f"no statement with {marker!r} ran"
    other[0].join(10)
    assert not other[0].is_alive()


@contextlib.contextmanager
def after_commit(action: Callable[[], None]) -> Iterator[None]:
    """Runs ``action`` on another thread, and waits for it, right after this thread's
    next commit: between a service's commit and its announcing what it did."""
    caller = threading.get_ident()
    other: list[threading.Thread] = []

    def committed(_session: Session) -> None:
        if threading.get_ident() == caller and not other:
            other.append(threading.Thread(target=action))
            other[0].start()
            other[0].join(10)

    sqlalchemy.event.listen(Session, "after_commit", committed)
    try:
        yield
    finally:
        sqlalchemy.event.remove(Session, "after_commit", committed)
    assert other, "nothing was committed"
    assert not other[0].is_alive()
