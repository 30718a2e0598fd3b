"""Keeping a dialog tall enough for its wrapped texts.

Qt gives a window the minimum height of its layout counting each word-wrapped label as
one line: a validation message of two or three lines then overlapped the field above
it (the patient form), and a note or a state of two lines showed half its second line
(the Settings dialog at 1024 x 768, the model manager at a scale of 2).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import QWidget


class TallEnough(QObject):
    """Grows ``window`` to the height its layout needs at its width, wrapped texts
    counted, whenever it is shown, resized or its layout changes (a message shown);
    never taller than its screen's free area."""

    _EVENTS = (QEvent.Type.Show, QEvent.Type.LayoutRequest, QEvent.Type.Resize)

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self._window = window
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._window and event.type() in self._EVENTS:
            self.grow()
        return False

    def grow(self) -> None:
        """Make the window as tall as its wrapped texts need now."""
        window = self._window
        layout = window.layout()
        if layout is None or not window.isVisible():
            return
        layout.activate()
        needed = layout.totalHeightForWidth(window.width())
        free = window.screen().availableGeometry().height()
        frame = window.frameGeometry().height() - window.height()
        height = min(needed, free - frame)
        if height > window.height():
            window.resize(window.width(), height)
