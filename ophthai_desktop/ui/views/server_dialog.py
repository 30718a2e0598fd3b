"""The API server dialog: start and stop the embedded server, the address it listens on
and the token that network access needs. Layout only;
:mod:`ophthai_desktop.ui.controllers.server` does the work."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
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
from ophthai_desktop.ui.views.tall_enough import TallEnough


class ServerDialog(QDialog):
    """The embedded API server's controls.

    Signals:
        start_requested(): the Start button.
        stop_requested(): the Stop button.
        host_chosen(str): an address picked from the list, or typed (Enter, or leaving
            the field): the field's text, unchecked.
        generate_requested(): the Generate token button.
        copy_requested(): the Copy token button.
    """

    start_requested = Signal()
    stop_requested = Signal()
    host_chosen = Signal(str)
    generate_requested = Signal()
    copy_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        TallEnough(self)  # a message or note of two lines shown whole
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
        self.host = QComboBox()
        self.host.setObjectName("apiHost")
        self.host.setEditable(True)
        self.host.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)  # typed is not listed
        self.host.setToolTip(
            "Where the API listens: this computer only, every network interface, or one "
            "of this computer's addresses (any but this computer's needs the token)"
        )
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
        form.addRow("Listen on:", self.host)
        form.addRow("API token:", token_row)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.hint)
        layout.addWidget(buttons)

        self.start_button.clicked.connect(self.start_requested)
        self.stop_button.clicked.connect(self.stop_requested)
        self.host.activated.connect(self._on_host_activated)
        host_edit = self.host.lineEdit()
        assert host_edit is not None  # an editable combo box
        host_edit.editingFinished.connect(self._on_host_editing_finished)
        # Enter in the address field takes the address: no button is the default one
        # (Start would start the server, Close close the dialog). Escape still closes.
        for button in self.findChildren(QPushButton):
            button.setAutoDefault(False)
            button.setDefault(False)
        # Where the dialog opens (see ServerController.open): it opened on Start, or on
        # Stop while running, where Space started or stopped the server.
        self.close_button = buttons.button(QDialogButtonBox.StandardButton.Close)
        self.generate_button.clicked.connect(self.generate_requested)
        self.copy_button.clicked.connect(self.copy_requested)

    def show_state(self, text: str, kind: str, *, running: bool, busy: bool) -> None:
        """The server's state; options can change only while it is stopped."""
        self.state.setText(text)
        set_style_property(self.state, "kind", kind)
        self.start_button.setEnabled(not running and not busy)
        self.stop_button.setEnabled(running and not busy)
        for widget in (self.host, self.generate_button):
            widget.setEnabled(not running and not busy)

    def set_choices(self, choices: list[tuple[str, str]]) -> None:
        """List ``(address, what it is)`` choices, keeping the field's text."""
        text = self.host.currentText()
        blocked = self.host.blockSignals(True)
        self.host.clear()
        for address, description in choices:
            self.host.addItem(f"{address}  ({description})", address)
        self.host.setEditText(text)
        self.host.blockSignals(blocked)

    def set_host(self, host: str) -> None:
        """Show ``host`` (its entry in the list where there is one), without emitting
        :attr:`host_chosen`."""
        blocked = self.host.blockSignals(True)
        index = self.host.findData(host)
        if index >= 0:
            self.host.setCurrentIndex(index)
        self.host.setEditText(self.host.itemText(index) if index >= 0 else host)
        self.host.blockSignals(blocked)
        self.mark_host(valid=True)

    def host_text(self) -> str:
        """What the address field says."""
        return self.host.currentText()

    def mark_host(self, *, valid: bool) -> None:
        set_style_property(self.host, "invalid", not valid)

    @Slot(int)
    def _on_host_activated(self, _index: int) -> None:
        self.host_chosen.emit(self.host.currentText())

    @Slot()
    def _on_host_editing_finished(self) -> None:
        self.host_chosen.emit(self.host.currentText())

    def show_hint(self, text: str, kind: str = "") -> None:
        self.hint.setText(text)
        set_style_property(self.hint, "kind", kind)
