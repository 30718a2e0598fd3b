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

What saves something the clinician gave (every change, and an import of images, which
runs on a thread of its own) is counted until its result is delivered (:attr:`TaskRunner.saving`):
quitting asks before leaving it unsaved, and :meth:`TaskRunner.shutdown` lets it run
(up to its deadline) where it drops the reads not started. They were dropped with the
reads: a verdict or booking still waiting for a locked database when the clinician
quit was lost without a word.

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
        self,
        task_id: int,
        fn: Callable[[], Any],
        relay: _Relay,
        *,
        lowered: bool,
        skip: Callable[[], bool] | None = None,
        ended: set[int] | None = None,
    ) -> None:
        super().__init__()
        self._task_id = task_id
        self._fn = fn
        self._relay = relay
        self._lowered = lowered
        self._skip = skip  # true once the task is not to start (a read at shutdown)
        self._ended = ended  # where its id goes once it did its work (a saving task)

    def run(self) -> None:
        """Pool thread: run the task, hand its result to the GUI thread."""
        if self._skip is not None and self._skip():
            return
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
            if self._ended is not None:
                self._ended.add(self._task_id)
            self._relay.finished.emit(self._task_id, value)


class TaskRunner(QObject):
    """A small thread pool for the GUI's slow calls.

    Signals:
        failed(str): a task without its own ``on_error`` failed; the message is for
            the clinician.
        settled(): nothing is left to save (:attr:`saving` fell to 0, the last result
            delivered); :attr:`saves_failed` says whether any failed meanwhile (raised,
            their callback raised, or :meth:`mark_not_saved`).
    """

    failed = Signal(str)
    settled = Signal()

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
        self._imports = QThreadPool(self)
        self._imports.setMaxThreadCount(1)  # one import after another, beside the rest
        self._relay = _Relay(self)
        self._relay.finished.connect(self._on_relay_finished)
        self._relay.failed.connect(self._on_relay_failed)
        self._callbacks: dict[int, tuple[OnDone | None, OnError | None]] = {}
        self._ids = itertools.count(1)
        self._closed = False
        self._saving: set[int] = set()  # tasks that save what the clinician gave
        self._ended: set[int] = set()  # of them, those that did (added by their thread)
        self._saves_failed = 0  # of them, those that failed, since the runner began
        self._delivering: list[int] = []  # the tasks whose callback runs (innermost last)
        self._not_saved: set[int] = set()  # of them, those said not saved in full

    @property
    def busy(self) -> bool:
        """Whether a task is running or its result has not been delivered yet."""
        return bool(self._callbacks)

    @property
    def saving(self) -> int:
        """How many tasks that save something the clinician gave (``saves``) have not
        delivered their result yet."""
        return len(self._saving)

    @property
    def saves_failed(self) -> int:
        """How many tasks that save something the clinician gave have failed since the
        runner began (a count that only grows: compare two readings)."""
        return self._saves_failed

    def mark_not_saved(self) -> None:
        """From a saving task's ``on_done``: the task ended, but part of what it was to
        save was not saved (an import's images refused, each named by its own message).
        It counts in :attr:`saves_failed`: quitting once saved stays, where it
        would have quit as if all were saved."""
        if self._delivering:
            self._not_saved.add(self._delivering[-1])

    def hold(self) -> int:
        """Count something the clinician gave that waits outside any task as unsaved
        (images dropped with no patient open, held by the new-patient form) until
        :meth:`release`: quitting asks first, and shutdown counts it as not saved.
        Returns the hold's id."""
        hold_id = next(self._ids)
        if not self._closed:
            self._saving.add(hold_id)
        return hold_id

    def release(self, hold_id: int) -> None:
        """A :meth:`hold` ends (what it held was handed to a saving task, or given up
        by the clinician); :attr:`settled` follows if nothing else is left to save."""
        self._delivered(hold_id, failed=False)

    def submit(
        self,
        fn: Callable[[], Any],
        on_done: OnDone | None = None,
        on_error: OnError | None = None,
        *,
        change: bool = False,
        importing: bool = False,
        saves: bool | None = None,
        first_step: bool = False,
    ) -> None:
        """Run ``fn()`` on a pool thread; then ``on_done(result)`` or ``on_error(exc)``
        on the GUI thread. Without ``on_error`` a failure is reported by :attr:`failed`.
        With ``change`` (``fn`` writes to the database) it runs on the changes' thread,
        after the changes sent before it, and reads do not wait behind it.

        With ``importing`` (a step of an import of images) it runs on the imports' thread:
        an import reads and checks its files, then stores them one after another, each
        waiting up to 30 s for a locked database; on the reads' threads two of them held
        every read (a patient opened, the list searched) meanwhile, and on the changes'
        thread every verdict waited behind them.

        ``saves`` (by default, what ``change`` or ``importing`` is): ``fn`` saves
        something the clinician gave, counted in :attr:`saving` until its result is
        delivered, and run rather than dropped at shutdown.

        ``first_step``: ``fn`` saves nothing itself; its ``on_done`` sends the step that
        does (an import's check, then its storing). Ended at shutdown, when no callback
        runs, it is counted as not saved: the log said such an import was saved."""
        if self._closed:
            return
        task_id = next(self._ids)
        self._callbacks[task_id] = (on_done, on_error)
        lowered = self._lowered
        if (change or importing) if saves is None else saves:
            self._saving.add(task_id)
            ended = None if first_step else self._ended
            task = _Task(task_id, fn, self._relay, lowered=lowered, ended=ended)
        else:
            task = _Task(task_id, fn, self._relay, lowered=lowered, skip=self._dropping)
        pool = self._changes if change else self._imports if importing else self._pool
        pool.start(task)

    def shutdown(
        self, deadline: QDeadlineTimer | int = 15_000, *, drop_unsaved: bool = False
    ) -> None:
        """Drop the queued reads and wait for running tasks, and for those that save
        what the clinician gave (queued ones too, in order) unless ``drop_unsaved``;
        until ``deadline`` (or for that many ms in all: a deadline shared with another
        runner's shutdown is not waited for twice). No callback runs afterwards."""
        self._closed = True
        pools = (self._pool, self._changes, self._imports)
        if drop_unsaved:
            for pool in pools:
                pool.clear()
        if not isinstance(deadline, QDeadlineTimer):
            deadline = QDeadlineTimer(deadline)
        if not all(pool.waitForDone(deadline) for pool in pools):
            log.warning("background tasks still running at shutdown")
            for pool in pools:
                pool.clear()
        # Those that did their work meanwhile saved it (their callbacks do not run); a
        # first step's next step is never sent.
        self._saving.difference_update(self._ended)
        if self._saving:
            # A count only: which patient or change it was is not for the log.
            log.warning(
                "%d change(s) or import(s) the clinician made were not saved at shutdown",
                len(self._saving),
            )
        self._callbacks.clear()

    def _dropping(self) -> bool:
        """Any thread: whether a task that saves nothing is no longer to start."""
        return self._closed

    @Slot(int, object)
    def _on_relay_finished(self, task_id: int, value: object) -> None:
        on_done, _ = self._callbacks.pop(task_id, (None, None))
        # Delivered whatever the callback does: one that raised (a defect) left its task
        # counted as unsaved for good, every later Quit asking and none quitting.
        raised = True
        self._delivering.append(task_id)
        try:
            if on_done is not None and not self._closed:
                on_done(value)
            raised = False
        finally:
            self._delivering.pop()
            not_saved = task_id in self._not_saved
            self._not_saved.discard(task_id)
            self._delivered(task_id, failed=raised or not_saved)

    @Slot(int, object)
    def _on_relay_failed(self, task_id: int, exc: object) -> None:
        _, on_error = self._callbacks.pop(task_id, (None, None))
        if self._closed:
            return
        try:
            if on_error is not None and isinstance(exc, BaseException):
                on_error(exc)
            elif isinstance(exc, BaseException):
                self.failed.emit(describe(exc))
        finally:
            self._delivered(task_id, failed=True)

    def _delivered(self, task_id: int, *, failed: bool) -> None:
        """A result delivered (after its callback, which may have sent the next step of
        the same work: an import's storing after its check)."""
        if task_id not in self._saving or self._closed:
            return
        self._saving.discard(task_id)
        self._ended.discard(task_id)
        self._saves_failed += failed
        if not self._saving:
            self.settled.emit()
