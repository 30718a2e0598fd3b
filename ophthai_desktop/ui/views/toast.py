"""In-window toasts, for where the desktop has no system tray."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from PySide6.QtCore import QEvent, QMargins, QObject, QPoint, QRect, QTimer, Slot
from PySide6.QtGui import QHideEvent, QMouseEvent, QShowEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from ophthai_desktop.ui.views.scale import scaled
from ophthai_desktop.ui.views.style import set_style_property

SHOW_MS = 8000
MARGIN = 10

#: What an alert is about, least to most urgent.
AlertKind = Literal["info", "warning", "critical"]
URGENCY: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
#: What moves or resizes the area a toast sits in.
PLACE_EVENTS = (QEvent.Type.Resize, QEvent.Type.Move, QEvent.Type.Show, QEvent.Type.Hide)


class Toast(QFrame):
    """A message that goes away by itself, in the bottom-right corner of the first of
    ``anchors`` shown in the window with room for it, else of the window.

    The main window gives the notifications list, then its central area: the toast is
    the newest notification, and over the list's older entries it hides nothing that
    is not also elsewhere. In the window's corner it covered the job queue's Cancel; in
    the central area's, the analysis' Approve and the scan viewer's Reset."""

    def __init__(self, parent: QWidget, anchors: Sequence[QWidget] = ()) -> None:
        super().__init__(parent)
        self._anchors = tuple(anchors)
        self.setObjectName("toast")
        self.title = QLabel()
        self.title.setObjectName("toastTitle")
        self.title.setStyleSheet("font-weight: bold;")
        self.label = QLabel()
        self.label.setObjectName("toastText")
        self.label.setWordWrap(True)
        # Wide enough that a finding reads in two or three lines, not five.
        self.label.setMinimumWidth(scaled(self.label, 300))
        self.label.setMaximumWidth(scaled(self.label, 360))
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
        self.show()
        self.raise_()
        self._timer.start(SHOW_MS)

    def text(self) -> str:
        return f"{self.title.text()}: {self.label.text()}" if self.isVisible() else ""

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.hide()

    def showEvent(self, event: QShowEvent) -> None:
        """Shown, or shown again with the window: follow the areas' sizes and places
        (only while shown: a Python event filter sees every event the widget gets, and
        each one has to take the interpreter lock). Installing twice installs once."""
        super().showEvent(event)
        for widget in self._watched():
            widget.installEventFilter(self)
        self._place()  # the window may have changed while it was hidden

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        if not self.isHidden():
            return  # the window went to the tray or was minimised: back with it
        for widget in self._watched():
            widget.removeEventFilter(self)
        if self._waiting is not None:
            QTimer.singleShot(0, self._show_waiting)

    @Slot()
    def _show_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not self.isVisible():
            self.show_message(*waiting)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in PLACE_EVENTS and self.isVisible():
            self._place()
        return False

    def area(self) -> QRect:
        """Where the toast goes, in its parent's coordinates: the first anchor shown in
        the window (not a floating dock) with room for it, else the whole window."""
        parent = self.parentWidget()
        if parent is None:
            return QRect()
        room = self.size().grownBy(QMargins(MARGIN, MARGIN, MARGIN, MARGIN))
        for anchor in self._anchors:
            if not anchor.isVisible() or anchor.window() is not parent:
                continue
            rect = QRect(anchor.mapTo(parent, QPoint(0, 0)), anchor.size())
            if rect.width() >= room.width() and rect.height() >= room.height():
                return rect
        return parent.rect()

    def _watched(self) -> list[QWidget]:
        """The window, the anchors and what holds them (a dock that moves or closes)."""
        parent = self.parentWidget()
        if parent is None:
            return []
        watched = [parent]
        for anchor in self._anchors:
            widget: QWidget | None = anchor
            while widget is not None and widget is not parent and widget not in watched:
                watched.append(widget)
                widget = widget.parentWidget()
        return watched

    @Slot()
    def _place(self) -> None:
        area = self.area()
        if area.isNull():
            return
        left = max(area.left() + MARGIN, area.right() + 1 - self.width() - MARGIN)
        top = max(area.top() + MARGIN, area.bottom() + 1 - self.height() - MARGIN)
        self.move(left, top)
