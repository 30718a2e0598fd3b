"""The inference worker's loop hosted in a QThread."""

from __future__ import annotations

import logging

from PySide6.QtCore import QObject, QThread

from ophthai_desktop.core.worker import InferenceWorker
from ophthai_desktop.ui.priority import lower_current_thread_priority

log = logging.getLogger(__name__)


class InferenceThread(QThread):
    """Runs :meth:`InferenceWorker.run` until :meth:`stop`.

    The worker publishes everything it does on the event bus; nothing here touches a
    widget. The model is loaded and run on this thread only.
    """

    def __init__(self, worker: InferenceWorker, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("inference-worker")
        self._worker = worker

    def run(self) -> None:
        lower_current_thread_priority()
        try:
            self._worker.run()
        except Exception:
            log.exception("the inference worker stopped unexpectedly")

    def stop(self) -> bool:
        """Cancel the running analysis, end the loop and wait for it (not for a model
        load, which cannot be interrupted: see :meth:`InferenceWorker.wait_stopped`).
        False when the thread is still running."""
        self._worker.request_stop()
        stopped = self._worker.wait_stopped(self.isRunning)
        self._worker.stop()  # lets go of the event bus; no thread of its own here
        return stopped
