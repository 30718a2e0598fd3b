"""Python's cyclic garbage collector, run on the GUI thread only.

With automatic collection on, the thread that happens to allocate when a threshold is
crossed runs the collection: the inference worker, a pool thread, the API server's. A
cycle holding a Qt object is then destroyed on that thread, and PySide's destructor
takes Qt's signal-slot lock, then waits for the interpreter lock (to look up a Python
override), while the GUI thread, holding the interpreter lock, waits for that same Qt
lock to delete a widget: the process hangs for good. (Seen in the test suite: the
worker thread's collection in ``Database.session`` against the GUI thread deleting a
combo box.) The usual remedy for PyQt and PySide applications is the one here:
automatic collection off while a window runs, and the GUI thread collects on a timer
by the same thresholds. The engine's own collection, where it drops a model (an unload,
a failed load: :func:`~ophthai_desktop.core.inference.memory.release_memory`), runs
here too (:meth:`MainThreadCollector.release_memory`).
"""

from __future__ import annotations

import gc
import logging
import threading
import time

from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from ophthai_desktop.core.inference import memory

log = logging.getLogger(__name__)

#: How often the GUI thread looks at the collector's counts.
CHECK_MS = 100
#: The least time between two full collections (Python itself runs one only when the
#: objects that survived since the last grew by a quarter, which cannot be read here):
#: a full pass over everything since start-up stalls the window for milliseconds.
FULL_EVERY_S = 30.0
#: How long the engine's thread waits for the GUI thread to free a dropped model's
#: memory before it goes on (the GUI thread still frees it when it gets to it).
RELEASE_WAIT_S = 10.0

_users = 0  # collectors running: automatic collection is off while there is one
_was_enabled = True


class MainThreadCollector(QObject):
    """Turns automatic collection off on :meth:`start` (back on, as it was, when the
    last one stops) and collects on the GUI thread when Python would have."""

    _release_requested = Signal(object, object)  # device (str | None), threading.Event

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._release_requested.connect(self._release_here)  # queued from other threads
        self._closing = False
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_MS)
        self._timer.timeout.connect(self.collect_due)
        self._running = False
        self._last_full = time.monotonic()

    def start(self) -> None:
        global _users, _was_enabled
        if self._running:
            return
        self._running = True
        if _users == 0:
            _was_enabled = gc.isenabled()
        _users += 1
        gc.disable()
        self._timer.start()

    def stop(self) -> None:
        global _users
        if not self._running:
            return
        self._running = False
        self._timer.stop()
        _users -= 1
        if _users == 0 and _was_enabled:
            gc.enable()

    @Slot()
    def collect_due(self) -> int | None:
        """Collect the generation Python's thresholds call for, if any; which one."""
        threshold0, threshold1, threshold2 = gc.get_threshold()
        count0, count1, count2 = gc.get_count()
        if threshold0 <= 0 or count0 <= threshold0:
            return None
        generation = 0
        if count1 > threshold1:
            generation = 1
            now = time.monotonic()
            if count2 > threshold2 and now - self._last_full >= FULL_EVERY_S:
                generation = 2
                self._last_full = now
        gc.collect(generation)
        return generation

    def release_memory(self, device: str | None) -> None:
        """Free a dropped model's memory (the engine's ``release_memory``, called on
        its thread) on the GUI thread, waiting for it at most :data:`RELEASE_WAIT_S`.
        Once :meth:`closing` was called nothing waits for the GUI thread (it may be
        waiting for this one): the device's cache is emptied, and the garbage left to
        the collections to come."""
        if QThread.currentThread() is self.thread():
            memory.release_memory(device)
            return
        if self._closing:
            if device is not None:
                memory.empty_device_cache(device)
            return
        done = threading.Event()
        self._release_requested.emit(device, done)
        if not done.wait(RELEASE_WAIT_S):
            log.info("the window's thread was busy: a dropped model's memory is freed later")

    def closing(self) -> None:
        """The window is closing: from now on :meth:`release_memory` does not wait."""
        self._closing = True

    @Slot(object, object)
    def _release_here(self, device: str | None, done: threading.Event) -> None:
        try:
            memory.release_memory(device)
        finally:
            done.set()
