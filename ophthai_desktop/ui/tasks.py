"""Running service calls off the GUI thread, with the result delivered back on it.

Every database call from the GUI goes through :class:`TaskRunner` (a SQLite write may
wait for the worker's transaction; a list query on 10,000 patients takes a while under
load), as do image decoding and anything else that can take more than a few
milliseconds. In the manner of Orange3's ``concurrent`` helpers: the function runs on a
pool thread, and ``on_done`` or ``on_error`` run on the GUI thread afterwards.

Changes (``submit(..., change=True)``) run on a thread of their own, one after another
in the order sent: a SQLite file locked by another program keeps a change waiting up to
30 s, and two of them held both threads of the pool, so that every read (a patient
opened, the list searched, the unread count) waited behind them, though the lock does
not stop reads. A read sent after a change may run before it ends (as with two threads
before); one that needs the change done is sent from the change's ``on_done``, or reads
the event the change publishes.

The threads of a runner for the GUI's quick calls run at the GUI thread's priority, not
below it (``lowered=False``, the default): such a task holds the interpreter lock for
most of its run (SQLAlchemy is Python), and the GUI thread waits for that lock. Run one
notch lower, the task was the first thread the operating system set aside on a machine
busy with other programs, while holding the lock: each Cancel in the job queue stalled
the window for 0.2-1 s (``bench/notifications_panel.py`` beside two busy processes). A
runner for long work (a download, a model's check) keeps its threads lower
(``lowered=True``), as the inference worker does.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QDeadlineTimer, QObject, QRunnable, QThreadPool, Signal, Slot

from ophthai_desktop.core.errors import OphthaiError
from ophthai_desktop.core.log_safety import safe_description
from ophthai_desktop.ui.messages import describe
from ophthai_desktop.ui.priority import lower_current_thread_priority

log = logging.getLogger(__name__)

OnDone = Callable[[Any], None]
OnError = Callable[[BaseException], None]


class _Relay(QObject):
    """Carries results from pool threads to the GUI thread (queued signals)."""

    finished = Signal(int, object)
    failed = Signal(int, object)


class _Task(QRunnable):
    def __init__(
        self, task_id: int, fn: Callable[[], Any], relay: _Relay, *, lowered: bool
    ) -> None:
        super().__init__()
        self._task_id = task_id
        self._fn = fn
        self._relay = relay
        self._lowered = lowered

    def run(self) -> None:
        """Pool thread: run the task, hand its result to the GUI thread."""
        if self._lowered:
            lower_current_thread_priority()
        try:
            value = self._fn()
        except OphthaiError as exc:
            self._relay.failed.emit(self._task_id, exc)
        except Exception as exc:
            # Not its text or traceback: a task's error can quote what it read (a name).
            log.error("a background task failed: %s", safe_description(exc))
            self._relay.failed.emit(self._task_id, exc)
        else:
            self._relay.finished.emit(self._task_id, value)


class TaskRunner(QObject):
    """A small thread pool for the GUI's slow calls.

    Signals:
        failed(str): a task without its own ``on_error`` failed; the message is for
            the clinician.
    """

    failed = Signal(str)

    def __init__(
        self, parent: QObject | None = None, *, max_threads: int = 2, lowered: bool = False
    ) -> None:
        """``lowered``: the threads run one notch below normal priority (for long work
        only: see the module's docstring)."""
        super().__init__(parent)
        self._lowered = lowered
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._changes = QThreadPool(self)
        self._changes.setMaxThreadCount(1)  # in the order sent; reads do not wait for them
        self._relay = _Relay(self)
        self._relay.finished.connect(self._on_relay_finished)
        self._relay.failed.connect(self._on_relay_failed)
        self._callbacks: dict[int, tuple[OnDone | None, OnError | None]] = {}
        self._ids = itertools.count(1)
        self._closed = False

    @property
    def busy(self) -> bool:
        """Whether a task is running or its result has not been delivered yet."""
        return bool(self._callbacks)

    def submit(
        self,
        fn: Callable[[], Any],
        on_done: OnDone | None = None,
        on_error: OnError | None = None,
        *,
        change: bool = False,
    ) -> None:
        """Run ``fn()`` on a pool thread; then ``on_done(result)`` or ``on_error(exc)``
        on the GUI thread. Without ``on_error`` a failure is reported by :attr:`failed`.
        With ``change`` (``fn`` writes to the database) it runs on the changes' thread,
        after the changes sent before it, and reads do not wait behind it."""
        if self._closed:
            return
        task_id = next(self._ids)
        self._callbacks[task_id] = (on_done, on_error)
        task = _Task(task_id, fn, self._relay, lowered=self._lowered)
        (self._changes if change else self._pool).start(task)

    def shutdown(self, timeout_ms: int = 15_000) -> None:
        """Drop queued tasks, wait for running ones; no callback runs afterwards."""
        self._closed = True
        self._pool.clear()
        self._changes.clear()
        deadline = QDeadlineTimer(timeout_ms)
        done = self._pool.waitForDone(deadline) and self._changes.waitForDone(deadline)
        if not done:
            log.warning("background tasks still running at shutdown")
        self._callbacks.clear()

    @Slot(int, object)
    def _on_relay_finished(self, task_id: int, value: object) -> None:
        on_done, _ = self._callbacks.pop(task_id, (None, None))
        if on_done is not None and not self._closed:
            on_done(value)

    @Slot(int, object)
    def _on_relay_failed(self, task_id: int, exc: object) -> None:
        _, on_error = self._callbacks.pop(task_id, (None, None))
        if self._closed or not isinstance(exc, BaseException):
            return
        if on_error is not None:
            on_error(exc)
        else:
            self.failed.emit(describe(exc))
