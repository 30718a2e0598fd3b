"""The model manager dialog: where the model comes from, its state, device, memory and
the actions that change it. Layout only; :mod:`ophthai_desktop.ui.controllers.model_manager`
decides what it shows."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.core.inference.engine import EngineStatus, ModelState
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.core.units import format_bytes
from ophthai_desktop.ui.views.style import set_style_property
from ophthai_desktop.ui.views.tall_enough import TallEnough

#: How each state reads, and the style kind of its label.
STATE_TEXT: dict[ModelState, tuple[str, str]] = {
    ModelState.NOT_INSTALLED: ("Not installed", "warn"),
    ModelState.DOWNLOADING: ("Downloading…", "warn"),
    ModelState.INSTALLED: ("Installed, not loaded", ""),
    ModelState.LOADING: ("Loading…", "warn"),
    ModelState.READY: ("Ready", "ok"),
    ModelState.UNLOADING: ("Unloading…", "warn"),
    ModelState.ERROR: ("Error", "error"),
}


@dataclass(frozen=True)
class LoadPreview:
    """Where the model would load and whether it would fit, worked out before loading.

    Attributes:
        device: The resolved device, or None when it could not be resolved.
        precision: ``bfloat16``, ``float32``, ``8bit`` or ``4bit``.
        estimated_bytes: Memory the model would need; None when the size is unknown.
        free_bytes: Free GPU memory or available RAM on ``device``.
        problem: Why the model cannot load here with these settings.
    """

    device: str | None = None
    precision: str | None = None
    estimated_bytes: int | None = None
    free_bytes: int | None = None
    problem: str | None = None


def _bytes(value: int | None) -> str:
    return format_bytes(value) if value is not None else "unknown"


class ModelManagerDialog(QDialog):
    """State, device and memory of the model, with load, unload and download.

    Signals:
        load_requested(): the Load button.
        unload_requested(): the Unload button.
        download_requested(): the Download button.
        download_cancel_requested(): the Cancel download button.
        check_requested(): the Check again button.
    """

    load_requested = Signal()
    unload_requested = Signal()
    download_requested = Signal()
    download_cancel_requested = Signal()
    check_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        TallEnough(self)  # a message or note of two lines shown whole
        self.setObjectName("modelManagerDialog")
        self.setWindowTitle("Model manager")
        self.setMinimumWidth(560)

        self.source = QLabel()
        self.source.setObjectName("modelSource")
        self.source.setWordWrap(True)
        self.source.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.state = QLabel()
        self.state.setObjectName("modelState")
        self.message = QLabel()
        self.message.setObjectName("modelMessage")
        self.message.setWordWrap(True)
        # Wide enough that the layout sizes its row for the width it gets.
        self.message.setMinimumWidth(400)
        # Top-aligned: a wrapped label's row can be taller than its text.
        self.message.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress = QProgressBar()
        self.progress.setObjectName("downloadProgress")
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.device = QLabel()
        self.device.setObjectName("modelDevice")
        self.precision = QLabel()
        self.precision.setObjectName("modelPrecision")
        self.estimate = QLabel()
        self.estimate.setObjectName("memoryEstimate")
        self.estimate.setWordWrap(True)
        self.estimate.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.estimate.setMinimumWidth(400)
        self.used = QLabel()
        self.used.setObjectName("memoryUsed")

        model_box = QGroupBox("Model")
        self._model_box = model_box
        form = QFormLayout(model_box)
        form.addRow("Source:", self.source)
        form.addRow("State:", self.state)
        form.addRow("", self.message)
        form.addRow("", self.progress)
        self._form = form
        form.setRowVisible(self.progress, False)
        form.addRow("Device:", self.device)
        form.addRow("Precision:", self.precision)
        form.addRow("Memory needed:", self.estimate)
        form.addRow("Memory in use:", self.used)

        self.max_new_tokens = QLabel()
        self.max_new_tokens.setObjectName("maxNewTokens")
        self.thinking_budget = QLabel()
        self.thinking_budget.setObjectName("thinkingBudget")
        self.max_pixels = QLabel()
        self.max_pixels.setObjectName("maxPixels")
        # Where to change them: the Settings dialog edits them (and writes the settings
        # file), which the title, naming only .env and variables, left unsaid.
        generation_box = QGroupBox("Generation (change in Tools ▸ Settings…)")
        generation_box.setObjectName("generationBox")
        generation = QFormLayout(generation_box)
        generation.addRow("Max new tokens:", self.max_new_tokens)
        generation.addRow("Thinking budget:", self.thinking_budget)
        generation.addRow("Max pixels per image:", self.max_pixels)

        self.load_button = QPushButton("Load")
        self.load_button.setObjectName("loadButton")
        self.unload_button = QPushButton("Unload")
        self.unload_button.setObjectName("unloadButton")
        self.download_button = QPushButton("Download")
        self.download_button.setObjectName("downloadButton")
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.setObjectName("cancelDownloadButton")
        self.cancel_button.hide()
        self.check_button = QPushButton("Check again")
        self.check_button.setObjectName("checkButton")
        actions = QHBoxLayout()
        for button in (
            self.load_button,
            self.unload_button,
            self.download_button,
            self.cancel_button,
        ):
            actions.addWidget(button)
        actions.addStretch(1)
        actions.addWidget(self.check_button)
        self.load_button.clicked.connect(self.load_requested)
        self.unload_button.clicked.connect(self.unload_requested)
        self.download_button.clicked.connect(self.download_requested)
        self.cancel_button.clicked.connect(self.download_cancel_requested)
        self.check_button.clicked.connect(self.check_requested)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        # Enter closes the dialog, as it closes the others: it pressed the first enabled
        # action, where the focus landed (Unload with the model loaded, Load without).
        self.close_button = buttons.button(QDialogButtonBox.StandardButton.Close)
        for button in (
            self.load_button,
            self.unload_button,
            self.download_button,
            self.cancel_button,
            self.check_button,
            self.close_button,
        ):
            button.setAutoDefault(False)
        self.close_button.setDefault(True)

        layout = QVBoxLayout(self)
        layout.addWidget(model_box)
        layout.addLayout(actions)
        layout.addWidget(generation_box)
        layout.addWidget(buttons)

    def show_settings(self, settings: Settings) -> None:
        """The generation settings the analyses run with (from the next one, when
        saved while one runs)."""
        self.max_new_tokens.setText(f"{settings.max_new_tokens:,} tokens")
        self.thinking_budget.setText(f"{settings.thinking_budget:,} tokens")
        self.max_pixels.setText(
            f"{settings.max_pixels:,} (about {int(settings.max_pixels**0.5)} x "
            f"{int(settings.max_pixels**0.5)} px)"
        )

    def show_status(
        self, status: EngineStatus, preview: LoadPreview | None, *, downloading: bool
    ) -> None:
        """The engine's state; ``preview`` fills in device and memory before loading;
        ``downloading`` says this dialog's download is running."""
        state = status.state
        text, kind = STATE_TEXT[state]
        if state is ModelState.NOT_INSTALLED and status.damaged:
            text, kind = "Damaged: files missing or unreadable", "error"
        if state is ModelState.DOWNLOADING and status.progress is not None:
            text = f"Downloading {status.progress * 100:.0f}%"
        self.state.setText(text)
        set_style_property(self.state, "kind", kind)
        source, name = status.model_source, status.model_name or status.model_id
        self.source.setText(name if source == name else f"{name}\nfrom {source}")
        message = status.error if state is ModelState.ERROR and status.error else status.message
        self.message.setText(message)
        self.show_progress(status.progress if state is ModelState.DOWNLOADING else None)

        loaded = state is ModelState.READY
        device = status.device if loaded or status.device else None
        precision = None
        if status.dtype is not None:
            precision = status.dtype if status.quantization == "none" else status.quantization
        estimate, free = status.estimated_bytes, status.free_bytes
        if not loaded and preview is not None:
            device = preview.device or device
            precision = preview.precision or precision
            estimate = preview.estimated_bytes if preview.estimated_bytes else estimate
            free = preview.free_bytes if preview.free_bytes is not None else free
        self.device.setText(device or "resolved when the model loads")
        if precision is None and status.quantization != "none":
            precision = status.quantization
        self.precision.setText(precision or "resolved when the model loads")
        if preview is not None and preview.problem and status.error == preview.problem:
            self.estimate.setText("not estimated (see the error above)")
            set_style_property(self.estimate, "kind", "")
        elif preview is not None and preview.problem and not loaded:
            self.estimate.setText(f"Cannot load with these settings: {preview.problem}")
            set_style_property(self.estimate, "kind", "error")
        elif loaded:
            # Not weighed against the memory free now: the model's own share is taken
            # from it (a need larger than what it left read "not enough memory").
            self.estimate.setText(f"about {_bytes(estimate)} (loaded)")
            set_style_property(self.estimate, "kind", "")
        elif estimate is None:
            self.estimate.setText(
                f"unknown (model {'files damaged' if status.damaged else 'not installed'})"
                f" · {_bytes(free)} free"
                if state is ModelState.NOT_INSTALLED
                else f"unknown · {_bytes(free)} free"
            )
            set_style_property(self.estimate, "kind", "")
        else:
            fits = free is None or estimate <= free
            verdict = "" if fits else " — not enough memory"
            self.estimate.setText(f"about {_bytes(estimate)} · {_bytes(free)} free{verdict}")
            set_style_property(self.estimate, "kind", "" if fits else "error")
        self.used.setText(_bytes(status.used_bytes) if status.used_bytes else "not loaded")

        busy = state in (ModelState.LOADING, ModelState.UNLOADING, ModelState.DOWNLOADING)
        self.load_button.setEnabled(state is ModelState.INSTALLED)
        self.unload_button.setEnabled(loaded)
        self.download_button.setVisible(not downloading)
        # An error with no model files found (a failed download) can be retried.
        missing = state is ModelState.NOT_INSTALLED or (
            state is ModelState.ERROR and status.parameters is None
        )
        self.download_button.setEnabled(not downloading and missing)
        self.cancel_button.setVisible(downloading)
        self.check_button.setEnabled(not busy and not downloading)
        self._fit_height()

    def _fit_height(self) -> None:
        """Grow the open dialog to the height its wrapped texts need now. Qt sizes a
        window once, from its texts when shown: a longer message (a load's error) was cut
        to the lines the first one took."""
        layout = self.layout()
        if not self.isVisible() or layout is None:
            return
        # The texts' new heights reach the dialog's layout once the model box has
        # measured them again (later, from the event loop): now, as they are set.
        self._form.invalidate()
        self._model_box.updateGeometry()
        layout.activate()
        needed = layout.totalHeightForWidth(self.width())
        if needed > self.height():
            self.resize(self.width(), needed)

    def show_progress(self, fraction: float | None, message: str = "") -> None:
        """The download bar: hidden with None, else 0..1."""
        self._form.setRowVisible(self.progress, fraction is not None)
        if fraction is None:
            return
        self.progress.setValue(int(max(0.0, min(1.0, fraction)) * 1000))
        self.progress.setFormat(f"{fraction * 100:.0f}%")
        if message:
            self.message.setText(message)
            self._fit_height()
