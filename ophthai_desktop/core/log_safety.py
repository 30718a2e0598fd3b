"""Describing an exception in a log line without what its text may quote.

An exception's message can hold what a person typed or what a file is called: an
``OSError`` names its file, a database error lists the values of its statement (a file
name, a patient's name). Where an exception may carry such things (the watch folder's
files, whose names can hold a patient's name), log :func:`safe_description` of it
instead of its message or traceback.

A patient's id can be the clinic's own (a medical record number a client or a device's
file name gave): log :func:`patient_ref` of it, never the id itself.

:func:`configure_logging` sets up the log of ``ophthai`` and ``ophthai serve`` and
sends exceptions nothing caught there too, described so: Python would print their text
and traceback on stderr, where the log goes.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import sys
import threading
import traceback
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

#: Frames of a traceback named in one description, innermost last.
MAX_FRAMES = 8

#: Inner exceptions of exception groups named in one description, nested groups' own
#: included; the rest are counted. A task group can gather hundreds of failures.
MAX_GROUPED = 16

#: How deep nested exception groups are itemized; a group deeper than that is named by
#: its kind and place and its count of inner exceptions only.
MAX_GROUP_DEPTH = 4


def configure_logging(level: str) -> None:
    """Log to stderr from ``level`` up (a level's name, e.g. ``INFO``; an unknown one is
    ``INFO``), and log an exception, caught and logged or caught by nothing, as
    :func:`safe_description` of it."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Pillow's DEBUG lines quote the metadata of every image it opens (a TIFF's tags, a
    # JPEG's EXIF), where devices write the patient's name and birth date.
    logging.getLogger("PIL").setLevel(logging.INFO)
    describe_exceptions_in(*LIBRARY_LOGGERS)
    # The app's own ``log.exception`` too (the worker, the model's load, the API
    # server): an exception's text can quote a patient's name (an SQL error quotes the
    # row it could not write) or a scan's file name. On the handlers, which every
    # propagated record passes, whatever logger made it.
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, DescribeExceptions) for f in handler.filters):
            handler.addFilter(DescribeExceptions())
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    sys.unraisablehook = _log_unraisable


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """``sys.excepthook`` (the main thread, and a Qt slot's exception under PySide)."""
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    log.critical("uncaught exception: %s", safe_description(exc.with_traceback(tb)))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or issubclass(args.exc_type, SystemExit):
        return
    thread = args.thread.name if args.thread is not None else "?"
    log.error("uncaught exception in thread %s: %s", thread, safe_description(args.exc_value))


def _log_unraisable(unraisable: Any) -> None:
    """``sys.unraisablehook``: never the object's repr nor the exception's text."""
    exc = unraisable.exc_value
    if exc is None:
        log.warning("an exception was ignored (%s)", unraisable.exc_type.__name__)
        return
    log.warning("an exception was ignored: %s", safe_description(exc))


#: Loggers of libraries that log an exception they caught with its text and traceback:
#: asyncio (``Task exception was never retrieved``, a failed callback: the lines after
#: the first name the task, future or handle by its repr, which quotes the exception's
#: text, a result or a callback's arguments) and concurrent.futures (a future's failed
#: done-callback). Each logs on its own logger, not a child, so a filter there sees it.
LIBRARY_LOGGERS = ("asyncio", "concurrent.futures")


def describe_exceptions_in(*names: str) -> None:
    """Install :class:`DescribeExceptions` on the loggers ``names`` (once each)."""
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DescribeExceptions) for f in logger.filters):
            logger.addFilter(DescribeExceptions())


class DescribeExceptions(logging.Filter):
    """A logger filter that writes a record's exception as :func:`safe_description` of
    it, after the first line of the message, instead of Python's traceback with its
    text: for libraries that log what they caught with its traceback (uvicorn's
    "Exception in ASGI application", which Starlette raises again after the app's own
    handler; asyncio's "Task exception was never retrieved"). The lines after the first
    are dropped too: asyncio's name the task by its repr, which quotes the exception's
    text. The record itself is kept, its level and logger as they were."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken record: the handler reports it as it would
            return True
        first_line = message.split("\n", 1)[0].rstrip()
        record.msg = f"{first_line}: {safe_description(exc)}"
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


#: The ids the app makes for a patient (``patients.new_patient_id``): random, so they say
#: nothing outside this database.
GENERATED_PATIENT_ID = re.compile(r"pt-[0-9a-f]{12}")

#: The key of :func:`patient_ref`'s digests: new in each process, so that a digest
#: cannot be matched against the digests of guessed record numbers.
_REF_KEY = secrets.token_bytes(16)


def patient_ref(patient_id: str | None) -> str:
    """How a log line names the patient ``patient_id``: an id the app made, as it is; an
    id a client or a file name gave (it can be a medical record number), as ``id#`` and
    a keyed digest of it, the same for the same id throughout the process (log lines of
    one run can be matched; the id cannot be read back nor guessed from it).
    """
    if patient_id is None:
        return "none"
    if GENERATED_PATIENT_ID.fullmatch(patient_id):
        return patient_id
    digest = hashlib.blake2b(patient_id.encode(), key=_REF_KEY, digest_size=5).hexdigest()
    return f"id#{digest}"


def safe_description(exc: BaseException) -> str:
    """The kind of ``exc`` and of each exception that caused it, with an OS error's errno
    and the system's wording of it, and where each was raised (file, line, function):
    never a message, a file name or an argument.

    ``PermissionError [EACCES: Permission denied] at ingest.py:712 in _read
    (from watcher.py:801 in _take_in)``

    An exception group's inner exceptions are itemized the same way, in brackets after
    it, nested groups too (at most :data:`MAX_GROUPED` in all, :data:`MAX_GROUP_DEPTH`
    groups deep; the rest counted):

    ``ExceptionGroup at tasks.py:40 in run [2 inner: ValueError at a.py:3 in f;
    OSError [ENOSPC: No space left on device] at b.py:9 in g]``
    """
    return _chain(exc, set(), [MAX_GROUPED], 0)


def _chain(exc: BaseException, seen: set[int], budget: list[int], depth: int) -> str:
    """:func:`safe_description` of ``exc`` and its causes; ``seen`` and ``budget`` (the
    inner exceptions still to be named) are shared by the groups within it."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        part = _one(current)
        if isinstance(current, BaseExceptionGroup):
            part += _inner(current, seen, budget, depth)
        parts.append(part)
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None
    return "; caused by ".join(parts)


def _inner(
    group: BaseExceptionGroup[BaseException], seen: set[int], budget: list[int], depth: int
) -> str:
    """`` [n inner: ...]``: each of ``group``'s exceptions described, while the budget
    and the depth allow, the others counted."""
    inner = group.exceptions
    listed: list[str] = []
    if depth < MAX_GROUP_DEPTH:
        for exc in inner:
            if budget[0] <= 0:
                break
            budget[0] -= 1
            listed.append(_chain(exc, seen, budget, depth + 1))
    left = len(inner) - len(listed)
    if left:
        listed.append(f"and {left} more")
    return f" [{len(inner)} inner: {'; '.join(listed)}]"


def _one(exc: BaseException) -> str:
    text = type(exc).__name__
    if isinstance(exc, OSError) and isinstance(exc.errno, int):
        code = errno.errorcode.get(exc.errno, str(exc.errno))
        text += f" [{code}: {os.strerror(exc.errno)}]"  # the system's words, not the raiser's
    frames = traceback.extract_tb(exc.__traceback__)[-MAX_FRAMES:]
    if frames:
        where = [f"{os.path.basename(f.filename)}:{f.lineno} in {f.name}" for f in frames]
        text += f" at {where[-1]}"
        if len(where) > 1:
            text += f" (from {', '.join(reversed(where[:-1]))})"
    return text
