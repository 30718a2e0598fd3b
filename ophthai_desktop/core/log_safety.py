"""Describing an exception in a log line without what its text may quote.

An exception's message can hold what a person typed or what a file is called: an
``OSError`` names its file, a database error lists the values of its statement (a file
name, a patient's name). Where an exception may carry such things (the watch folder's
files, whose names can hold a patient's name), log :func:`safe_description` of it
instead of its message or traceback.
"""

from __future__ import annotations

import errno
import os
import traceback

#: Frames of a traceback named in one description, innermost last.
MAX_FRAMES = 8


def safe_description(exc: BaseException) -> str:
    """The kind of ``exc`` and of each exception that caused it, with an OS error's errno
    and the system's wording of it, and where each was raised (file, line, function):
    never a message, a file name or an argument.

    ``PermissionError [EACCES: Permission denied] at ingest.py:712 in _read
    (from watcher.py:801 in _take_in)``
    """
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(_one(current))
        if current.__cause__ is not None:
            current = current.__cause__
        elif not current.__suppress_context__:
            current = current.__context__
        else:
            current = None
    return "; caused by ".join(parts)


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
