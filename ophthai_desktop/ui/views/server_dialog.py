"""The API server dialog: start and stop the embedded server, LAN access and its token.
Layout only; :mod:`ophthai_desktop.ui.controllers.server` does the work."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.ui.views.style import set_style_property


class ServerDialog(QDialog):
    """The embedded API server's controls.

    Signals:
        start_requested(): the Start button.
        stop_requested(): the Stop button.
        lan_toggled(bool): the LAN access checkbox.
        generate_requested(): the Generate token button.
        copy_requested(): the Copy token button.
    """

    start_requested = Signal()
    stop_requested = Signal()
    lan_toggled = Signal(bool)
    generate_requested = Signal()
    copy_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("serverDialog")
        self.setWindowTitle("API server")
        self.setMinimumWidth(520)

        self.state = QLabel()
        self.state.setObjectName("serverState")
        self.state.setWordWrap(True)
        self.state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("startServerButton")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopServerButton")
        self.lan = QCheckBox("Allow access from the clinic network (needs the token)")
        self.lan.setObjectName("lanAccess")
        self.token = QLineEdit()
        self.token.setObjectName("apiToken")
        self.token.setReadOnly(True)
        self.token.setPlaceholderText("no token: only programs on this computer can connect")
        # Wide enough for that sentence (it was cut off after "comp").
        self.token.setMinimumWidth(
            self.token.fontMetrics().horizontalAdvance(self.token.placeholderText()) + 24
        )
        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generateTokenButton")
        self.copy_button = QPushButton("Copy")
        self.copy_button.setObjectName("copyTokenButton")
        self.hint = QLabel()
        self.hint.setObjectName("serverHint")
        self.hint.setWordWrap(True)

        controls = QHBoxLayout()
        controls.addWidget(self.start_button)
        controls.addWidget(self.stop_button)
        controls.addStretch(1)
        token_row = QHBoxLayout()
        token_row.addWidget(self.token, 1)
        token_row.addWidget(self.generate_button)
        token_row.addWidget(self.copy_button)

        form = QFormLayout()
        form.addRow("Server:", self.state)
        form.addRow("", controls)
        form.addRow("Network:", self.lan)
        form.addRow("API token:", token_row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.hint)
        layout.addWidget(buttons)

        self.start_button.clicked.connect(self.start_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        self.lan.toggled.connect(self.lan_toggled)
        self.generate_button.clicked.connect(self.generate_requested)
        self.copy_button.clicked.connect(self.copy_requested)

    def show_state(self, text: str, kind: str, *, running: bool, busy: bool) -> None:
        """The server's state; options can change only while it is stopped."""
        self.state.setText(text)
        set_style_property(self.state, "kind", kind)
        self.start_button.setEnabled(not running and not busy)
        self.stop_button.setEnabled(running and not busy)
        for widget in (self.lan, self.generate_button):
            widget.setEnabled(not running and not busy)

    def set_lan(self, checked: bool) -> None:
        """Tick or untick LAN access without emitting :attr:`lan_toggled`."""
        blocked = self.lan.blockSignals(True)
        self.lan.setChecked(checked)
        self.lan.blockSignals(blocked)

    def show_hint(self, text: str, kind: str = "") -> None:
        self.hint.setText(text)
        set_style_property(self.hint, "kind", kind)
