"""Whether the database answers, said once: the log and the listeners hear when it
stops answering, a reminder at most every :data:`REMINDER_S` while it does not, and
when it answers again.

Every unit of work reports here (:meth:`Availability.failed`, :meth:`Availability.answered`),
so the callers that retry during an outage (the inference worker, the watch folder, every
request) need not log it themselves: a database server restarting for a minute is a few
lines in the log, not one per attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

#: How often the log says again that the database still does not answer.
REMINDER_S = 60.0

#: How long without a failure before a call that succeeds means the database is back. A
#: locked or read-only SQLite file still answers reads while it refuses writes: without
#: this, each read in between would end the outage and each write start a new one.
QUIET_S = 5.0

#: Called with True when the database answers again, False when it stops answering; on
#: the thread whose call noticed, so it only hands off.
Listener = Callable[[bool], None]


class Availability:
    """Tracks outages of one database (any thread)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._down_since: float | None = None
        self._last_failure = 0.0
        self._last_said = 0.0
        self._failures = 0
        self._listeners: list[Listener] = []

    @property
    def available(self) -> bool:
        """False from a call that failed until the database is back."""
        return self._down_since is None

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def failed(self, kind: str) -> None:
        """A unit of work failed because the database did not answer (``kind``: the
        driver's exception class, never its text, which can quote values)."""
        now = self.clock()
        with self._lock:
            self._last_failure = now
            self._failures += 1
            down_since = self._down_since
            started = down_since is None
            if down_since is None:
                self._down_since = self._last_said = now
                self._failures = 1
            elif now - self._last_said >= REMINDER_S:
                self._last_said = now
                log.warning(
                    "the database still does not answer after %.0f s (%d calls refused, %s)",
                    now - down_since,
                    self._failures,
                    kind,
                )
        if started:
            log.error(
                "the database does not answer (%s): requests answer 503, analyses and "
                "watch-folder files wait until it does",
                kind,
            )
            self._tell(False)

    def answered(self) -> None:
        """A unit of work succeeded."""
        if self._down_since is None:  # the usual case: no lock taken
            return
        now = self.clock()
        with self._lock:
            down_since = self._down_since
            if down_since is None or now - self._last_failure < QUIET_S:
                return
            self._down_since = None
        log.warning("the database answers again after %.0f s", now - down_since)
        self._tell(True)

    def _tell(self, available: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(available)
            except Exception:  # a listener's bug never breaks a unit of work
                log.exception("a database availability listener failed")
