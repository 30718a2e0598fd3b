"""Whether the database answers, said once: the log and the listeners hear when it
stops answering, a reminder at most every :data:`REMINDER_S` while it does not, and
when it answers again.

Every unit of work reports here (:meth:`Availability.failed`, :meth:`Availability.answered`),
so the callers that retry during an outage (the inference worker, the watch folder, every
request) need not log it themselves: a database server restarting for a minute is a few
lines in the log, not one per attempt.

While it does not answer, a thread of this module asks it on its own (a cheap query
every :data:`PROBE_S`), so that its return is said within seconds even in an app that
makes no call of its own meanwhile (no request, no job: the window's banner and the
``database_availability`` event would stay "unavailable" until the next one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from ophthai_desktop.core.errors import DatabaseUnavailable

log = logging.getLogger(__name__)

#: How often the log says again that the database still does not answer.
REMINDER_S = 60.0

#: How long without a failure before a call that succeeds means the database is back. A
#: locked or read-only SQLite file still answers reads while it refuses writes: without
#: this, each read in between would end the outage and each write start a new one.
QUIET_S = 5.0

#: How often the database is asked whether it answers while it does not.
PROBE_S = 2.0

#: How long :meth:`Availability.close` waits for a question already asked (a server that
#: does not answer can hold a connection attempt for its whole timeout).
PROBE_JOIN_S = 2.0

#: Called with True when the database answers again, False when it stops answering; on
#: the thread whose call noticed, so it only hands off.
Listener = Callable[[bool], None]


class Availability:
    """Tracks outages of one database (any thread)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        probe: Callable[[], None] | None = None,
    ) -> None:
        """``probe`` asks the database whether it answers (raising when it does not);
        None: nothing is asked, only the units of work report."""
        self.clock = clock
        self._probe = probe
        self._lock = threading.Lock()
        # Held from a change of state until its listeners have heard it, so that they
        # hear the changes in the order they happened: the probe thread saying the
        # database is back and a unit of work finding it gone again at that moment
        # otherwise raced, and the last word heard could be "available" during an
        # outage. Reentrant: a listener's own call that fails reports here too.
        self._telling = threading.RLock()
        self._closed = threading.Event()
        self._prober: threading.Thread | None = None
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

    def failed(
        self,
        kind: str,
        *,
        outage: str = DatabaseUnavailable.OUTAGE,
        until: str = DatabaseUnavailable.UNTIL,
    ) -> None:
        """A unit of work failed because the database did not answer (``kind``: the
        driver's exception class, never its text, which can quote values). ``outage``
        and ``until`` say it in the log when it starts (the database file deleted is
        an outage that a restart ends, not one that ends once it answers)."""
        now = self.clock()
        with self._telling:
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
                    "%s (%s): requests answer 503, analyses and watch-folder files wait; "
                    "they go on %s",
                    outage,
                    kind,
                    until,
                )
                self._tell(False)
        if started:
            self._start_probing()

    def answered(self) -> None:
        """A unit of work succeeded."""
        if self._down_since is None:  # the usual case: no lock taken
            return
        now = self.clock()
        with self._telling:
            with self._lock:
                down_since = self._down_since
                if down_since is None or now - self._last_failure < QUIET_S:
                    return
                self._down_since = None
            log.warning("the database answers again after %.0f s", now - down_since)
            self._tell(True)

    @property
    def probing(self) -> bool:
        """Whether a thread of this object is asking the database."""
        prober = self._prober
        return prober is not None and prober.is_alive()

    def close(self) -> None:
        """Stop asking the database (the app is closing); waits at most
        :data:`PROBE_JOIN_S` for a question already asked."""
        self._closed.set()
        with self._lock:
            prober = self._prober
        if prober is not None and prober is not threading.current_thread():
            prober.join(PROBE_JOIN_S)

    def _start_probing(self) -> None:
        if self._probe is None or self._closed.is_set():
            return
        with self._lock:
            if self._prober is not None:
                return  # still running: it sees this outage (see _probing)
            self._prober = threading.Thread(
                target=self._probing, args=(self._probe,), name="database-probe", daemon=True
            )
            self._prober.start()

    def _probing(self, probe: Callable[[], None]) -> None:
        """Ask the database every :data:`PROBE_S` until it is back or :meth:`close`;
        a question that works counts as a unit of work that worked, one that fails as a
        failure (not said: the outage's own lines say it). Its own thread."""
        try:
            while not self._closed.wait(PROBE_S):
                try:
                    probe()
                except Exception as exc:
                    log.debug("the database still does not answer (%s)", type(exc).__name__)
                    with self._lock:
                        self._last_failure = self.clock()
                    continue
                self.answered()
                with self._lock:
                    if self._down_since is None:
                        # Back. Let go under the lock: an outage after this starts
                        # another thread rather than counting on this one.
                        self._prober = None
                        return
        finally:
            with self._lock:
                if self._prober is threading.current_thread():
                    self._prober = None

    def _tell(self, available: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(available)
            except Exception:  # a listener's bug never breaks a unit of work
                log.exception("a database availability listener failed")
