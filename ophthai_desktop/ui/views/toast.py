"""In-window toasts, for where the desktop has no system tray."""

from __future__ import annotations

from typing import Literal

from PySide6.QtCore import QEvent, QObject, QTimer, Slot
from PySide6.QtGui import QHideEvent, QMouseEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ophthai_desktop.ui.views.style import set_style_property

SHOW_MS = 8000
MARGIN = 16

#: What an alert is about, least to most urgent.
AlertKind = Literal["info", "warning", "critical"]
URGENCY: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class Toast(QFrame):
    """A message in the window's bottom-right corner that goes away by itself."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("toast")
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: bold;")
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setMaximumWidth(360)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        column = QWidget()
        inner = QVBoxLayout(column)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(self.title)
        inner.addWidget(self.label)
        layout.addWidget(column)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        self.kind: AlertKind = "info"
        #: A less urgent message that came while a more urgent one showed.
        self._waiting: tuple[str, str, AlertKind] | None = None
        self.hide()

    def show_message(self, title: str, text: str, kind: AlertKind = "info") -> None:
        """Show a message; one less urgent than the one showing waits until that one goes
        (a critical finding is not wiped off by a routine message)."""
        if self.isVisible() and URGENCY[kind] < URGENCY[self.kind]:
            self._waiting = (title, text, kind)
            return
        self.kind = kind
        self.title.setText(title)
        self.label.setText(text)
        set_style_property(self, "kind", kind)
        self.adjustSize()
        self._place()
        # Follow the window's size only while shown: a Python event filter sees every
        # event the window gets, and each one has to take the interpreter lock.
        parent = self.parentWidget()
        if parent is not None and not self.isVisible():
            parent.installEventFilter(self)
        self.show()
        self.raise_()
        self._timer.start(SHOW_MS)

    def text(self) -> str:
        return f"{self.title.text()}: {self.label.text()}" if self.isVisible() else ""

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.hide()

    def hideEvent(self, event: QHideEvent) -> None:
        parent = self.parentWidget()
        if parent is not None:
            parent.removeEventFilter(self)
        super().hideEvent(event)
        if self._waiting is not None:
            QTimer.singleShot(0, self._show_waiting)

    @Slot()
    def _show_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not self.isVisible():
            self.show_message(*waiting)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize and self.isVisible():
            self._place()
        return False

    @Slot()
    def _place(self) -> None:
        parent = self.parentWidget()
        if parent is None:
            return
        self.move(
            parent.width() - self.width() - MARGIN,
            parent.height() - self.height() - MARGIN - 24,
        )
