"""In-window toasts, for where the desktop has no system tray."""

from __future__ import annotations

from typing import Literal

from PySide6.QtCore import QEvent, QObject, QPoint, QRect, QTimer, Slot
from PySide6.QtGui import QHideEvent, QMouseEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ophthai_desktop.ui.views.style import set_style_property

SHOW_MS = 8000
MARGIN = 16

#: What an alert is about, least to most urgent.
AlertKind = Literal["info", "warning", "critical"]
URGENCY: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class Toast(QFrame):
    """A message that goes away by itself, in the bottom-right corner of ``anchor`` (the
    main window's central area: above the docks, never over the job queue's Cancel or
    the notifications' buttons, wherever they are docked), or of the window without
    one."""

    def __init__(self, parent: QWidget, anchor: QWidget | None = None) -> None:
        super().__init__(parent)
        self._anchor = anchor
        self.setObjectName("toast")
        self.title = QLabel()
        self.title.setStyleSheet("font-weight: bold;")
        self.label = QLabel()
        self.label.setWordWrap(True)
        # Wide enough that a finding reads in two or three lines, not five.
        self.label.setMinimumWidth(300)
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
        # Follow the area's size and place only while shown: a Python event filter sees
        # every event the area gets, and each one has to take the interpreter lock.
        watched = self._watched()
        if watched is not None and not self.isVisible():
            watched.installEventFilter(self)
        self.show()
        self.raise_()
        self._timer.start(SHOW_MS)

    def text(self) -> str:
        return f"{self.title.text()}: {self.label.text()}" if self.isVisible() else ""

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.hide()

    def hideEvent(self, event: QHideEvent) -> None:
        watched = self._watched()
        if watched is not None:
            watched.removeEventFilter(self)
        super().hideEvent(event)
        if self._waiting is not None:
            QTimer.singleShot(0, self._show_waiting)

    @Slot()
    def _show_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not self.isVisible():
            self.show_message(*waiting)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in (QEvent.Type.Resize, QEvent.Type.Move) and self.isVisible():
            self._place()
        return False

    def area(self) -> QRect:
        """Where the toast goes, in its parent's coordinates."""
        parent = self.parentWidget()
        if parent is None:
            return QRect()
        anchor = self._anchor
        if anchor is None or not anchor.isVisibleTo(parent):
            return parent.rect()
        return QRect(anchor.mapTo(parent, QPoint(0, 0)), anchor.size())

    def _watched(self) -> QWidget | None:
        return self._anchor if self._anchor is not None else self.parentWidget()

    @Slot()
    def _place(self) -> None:
        area = self.area()
        if area.isNull():
            return
        left = max(area.left() + MARGIN, area.right() + 1 - self.width() - MARGIN)
        top = max(area.top() + MARGIN, area.bottom() + 1 - self.height() - MARGIN)
        self.move(left, top)
