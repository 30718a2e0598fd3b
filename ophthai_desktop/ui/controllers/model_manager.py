"""Wiring of the model manager dialog: engine state in, load/unload/download out.

Nothing slow runs on the GUI thread: load and unload are commands for the inference
worker; the download, the file check and the device/memory preview (which imports
torch) run on the task pool, and their results come back as queued signals.
"""

from __future__ import annotations

import logging
import threading

from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import QWidget

from ophthai_desktop.core.errors import OphthaiError
from ophthai_desktop.core.inference import devices
from ophthai_desktop.core.inference.download import DownloadCancelled
from ophthai_desktop.core.inference.engine import EngineStatus, ModelState
from ophthai_desktop.ui.context import GuiContext
from ophthai_desktop.ui.messages import describe
from ophthai_desktop.ui.views.model_manager import LoadPreview, ModelManagerDialog

log = logging.getLogger(__name__)


class ModelManagerController(QObject):
    """Opens the model manager and carries out its buttons.

    Signals:
        download_progressed(float, str): from the download thread; delivered queued,
            so the dialog is only touched on the GUI thread.
        download_finished(bool, str): the download ended: whether it succeeded, and
            the message for the clinician when it did not.
    """

    download_progressed = Signal(float, str)
    download_finished = Signal(bool, str)

    def __init__(self, ctx: GuiContext, parent: QWidget) -> None:
        super().__init__(parent)
        self._ctx = ctx
        self._app = ctx.application
        self._parent = parent
        self.dialog: ModelManagerDialog | None = None
        self.preview: LoadPreview | None = None
        self._cancel: threading.Event | None = None
        #: Checks of device and memory started (see _check); only the last is shown.
        self._checks = 0
        #: The model's state last shown.
        self._state = ""
        ctx.bridge.model_state_changed.connect(self._on_bridge_model_state_changed)
        self.download_progressed.connect(self._on_download_progressed)

    @property
    def downloading(self) -> bool:
        """Whether this window's download is running."""
        return self._cancel is not None

    # Opening ---------------------------------------------------------------------------

    @Slot()
    def open(self) -> ModelManagerDialog:
        """Show the dialog (one per window) and check the files and the device."""
        if self.dialog is None:
            dialog = ModelManagerDialog(self._parent)
            dialog.load_requested.connect(self.load)
            dialog.unload_requested.connect(self.unload)
            dialog.download_requested.connect(self.download)
            dialog.download_cancel_requested.connect(self.cancel_download)
            dialog.check_requested.connect(self.check)
            dialog.show_settings(self._app.settings)
            self.dialog = dialog
        self._show(self._app.engine.status())
        if not self.dialog.isVisible():  # the keyboard starts on Close, not on an action
            self.dialog.close_button.setFocus(Qt.FocusReason.OtherFocusReason)
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        self._check(refresh=False)  # keeps an error on show until "Check again"
        return self.dialog

    @Slot(object)
    def follow_settings(self, _settings: object) -> None:
        """Settings were saved: an open dialog shows the generation settings the next
        analysis runs with, and works out the device and memory of the next load again."""
        if self.dialog is not None:
            self.dialog.show_settings(self._app.settings)
            self._check(refresh=False)

    def stop(self) -> None:
        """Cancel a running download (the window is closing)."""
        if self._cancel is not None:
            self._cancel.set()

    # Actions -----------------------------------------------------------------------------

    @Slot()
    def load(self) -> None:
        self._app.worker.request_load()

    @Slot()
    def unload(self) -> None:
        self._app.worker.request_unload()

    @Slot()
    def check(self) -> None:
        """Look at the model files again (clearing an error) and work out device and
        memory, off the GUI thread."""
        self._check(refresh=True)

    def _check(self, *, refresh: bool) -> None:
        # The settings saved last: a busy engine (a load or an analysis running) takes
        # them only once it is done, and the save's own hand-over to it may not have run
        # yet on the pool.
        engine, settings = self._app.engine, self._app.settings
        self._checks += 1
        check = self._checks

        def run() -> tuple[EngineStatus, LoadPreview]:  # pool thread
            status = engine.refresh() if refresh else engine.status()
            try:
                plan = devices.plan_device(settings.device, settings.quantization)
            except OphthaiError as exc:
                return status, LoadPreview(problem=exc.message)
            return status, LoadPreview(
                device=plan.device,
                precision=plan.precision,
                estimated_bytes=engine.estimate_bytes(plan, settings),
                free_bytes=devices.free_memory_bytes(plan.device),
            )

        if self.dialog is not None and self.preview is None:
            # The first check imports torch (seconds): say so rather than "unknown".
            self.dialog.estimate.setText("checking the device and free memory…")
        self._ctx.slow_tasks.submit(
            run,
            lambda result: self._on_checked(check, result),
            lambda exc: self._on_failed(check, exc),
        )

    @Slot()
    def download(self) -> None:
        """Download the model on a pool thread; progress arrives as signals."""
        if self._cancel is not None:
            return
        cancel = threading.Event()
        self._cancel = cancel
        engine = self._app.engine

        def progress(fraction: float, message: str) -> None:  # huggingface_hub threads
            self.download_progressed.emit(fraction, message)

        log.info("model download started from the model manager")
        self._ctx.slow_tasks.submit(
            lambda: engine.download(progress, cancel),
            self._on_downloaded,
            self._on_download_failed,
        )
        self._show(engine.status())

    @Slot()
    def cancel_download(self) -> None:
        if self._cancel is not None:
            self._cancel.set()
            if self.dialog is not None:
                self.dialog.cancel_button.setEnabled(False)

    # Results (GUI thread) ---------------------------------------------------------------

    def _show(self, status: EngineStatus) -> None:
        if self.dialog is not None:
            self.dialog.show_status(status, self.preview, downloading=self.downloading)

    def _on_checked(self, check: int, result: tuple[EngineStatus, LoadPreview]) -> None:
        if check != self._checks:  # one made before a save (two pool threads): stale
            return
        _status, self.preview = result
        self._show(self._app.engine.status())

    def _on_failed(self, check: int, exc: BaseException) -> None:
        if check != self._checks:  # superseded by a later check: its answer counts
            return
        if self.dialog is not None:
            self.dialog.message.setText(describe(exc))

    def _on_downloaded(self, _folder: object) -> None:
        self._cancel = None
        self.download_finished.emit(True, "")
        self.check()

    def _on_download_failed(self, exc: BaseException) -> None:
        self._cancel = None
        message = describe(exc)
        if isinstance(exc, DownloadCancelled):
            log.info("model download cancelled")
        else:
            log.warning("model download failed: %s", message)
        self._show(self._app.engine.status())
        if self.dialog is not None and not isinstance(exc, DownloadCancelled):
            self.dialog.message.setText(message)
        self.download_finished.emit(False, message)

    @Slot(float, str)
    def _on_download_progressed(self, fraction: float, message: str) -> None:
        if self.dialog is not None and self._cancel is not None:
            self.dialog.show_progress(fraction, message)

    @Slot(str, str, object)
    def _on_bridge_model_state_changed(self, state: str, _message: str, _progress: object) -> None:
        self._show(self._app.engine.status())
        freed = state != self._state and state in (ModelState.INSTALLED, ModelState.ERROR)
        self._state = state
        if freed and self.dialog is not None and self.dialog.isVisible():
            # The model's memory is free again: the free memory measured while it was
            # loaded (the dialog opened then) said it would not fit.
            self._check(refresh=False)
