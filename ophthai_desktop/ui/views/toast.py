"""In-window toasts, for where the desktop has no system tray."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QTimer, Slot
from PySide6.QtGui import QHideEvent, QMouseEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ophthai_desktop.ui.views.style import set_style_property

SHOW_MS = 8000
MARGIN = 16


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
        self.hide()

    def show_message(self, title: str, text: str, kind: str = "info") -> None:
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
