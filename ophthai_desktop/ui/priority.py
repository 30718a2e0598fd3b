"""Background threads yield the CPU to the GUI thread.

The GUI thread must be scheduled the moment it gets the interpreter lock; on a busy
machine (two cores: the model, the API server, a browser) the operating system decides
who runs. The inference worker, the API server's threads and the GUI's runner for long
work therefore run one notch below normal priority: on Linux by raising the thread's
own nice value (per-thread there), elsewhere through ``QThread.setPriority``.
Throughput barely changes (they still get every core nobody else wants).

Not the GUI's quick reads and changes (``TaskRunner``'s default): those are Python
that holds the interpreter lock the GUI thread waits for, and a thread set aside by
the operating system while holding it stalls the window for as long (see
:mod:`ophthai_desktop.ui.tasks`).
"""

from __future__ import annotations

import logging
import os
import sys
import threading

from PySide6.QtCore import QThread

log = logging.getLogger(__name__)

NICE_STEP = 5
_done = threading.local()


def lower_current_thread_priority() -> None:
    """Lower the calling thread's priority once (later calls do nothing)."""
    if getattr(_done, "lowered", False):
        return
    _done.lowered = True
    if sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            now = os.getpriority(os.PRIO_PROCESS, tid)
            os.setpriority(os.PRIO_PROCESS, tid, min(19, now + NICE_STEP))
        except OSError as exc:  # not permitted in some sandboxes: harmless
            log.debug("could not lower the thread's priority: %s", exc)
        return
    thread = QThread.currentThread()
    if thread is not None:
        thread.setPriority(QThread.Priority.LowPriority)
