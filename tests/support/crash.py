"""Whether an app's output shows a crash: Python's traceback (``log.exception``), or the
line the app logs instead of one for an exception nothing caught
(``core/log_safety.py``), or uvicorn's for a request that failed, or asyncio's for a task
whose exception nobody retrieved (their tracebacks are written the same way:
``DescribeExceptions``)."""

from __future__ import annotations

#: What only a crash writes.
CRASH_MARKS = (
    "Traceback",
    "uncaught exception",
    "an exception was ignored",
    "Exception in ASGI application",
    "exception was never retrieved",  # asyncio's, for a task's or a future's
)


def crash_lines(output: str) -> list[str]:
    """The lines of ``output`` that show a crash."""
    return [line for line in output.splitlines() if any(m in line for m in CRASH_MARKS)]
