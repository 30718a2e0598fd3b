"""Keeping a dialog tall enough for its wrapped texts.

Qt gives a window the minimum height of its layout counting each word-wrapped label as
one line: a validation message of two or three lines then overlapped the field above
it (the patient form), and a note or a state of two lines showed half their second line
(the Settings dialog at 1024 x 768, the model manager at a scale of 2).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QWidget


class TallEnough(QObject):
    """Gives ``window`` the minimum height its layout needs at its width, wrapped texts
    counted, whenever it is shown, its layout changes (a message shown) or its width
    changes; never more than its screen's free area. Qt grows a window shorter than
    its new minimum.

    A minimum, not a resize: the window manager holds a drag at it. Grown back from
    inside each of its resizes, the dialog fought a drag below its texts' height, and
    jittered."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self._window = window
        self._width = -1  # the width the minimum was counted at
        # A new width is answered after its resize, not inside it.
        self._later = QTimer(self)
        self._later.setSingleShot(True)
        self._later.setInterval(0)
        self._later.timeout.connect(self.grow)
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._window:
            kind = event.type()
            if kind in (QEvent.Type.Show, QEvent.Type.LayoutRequest):
                self.grow()
            elif isinstance(event, QResizeEvent) and event.size().width() != self._width:
                self._later.start()
        return False

    def grow(self) -> None:
        """Make the window's minimum height what its wrapped texts need now."""
        window = self._window
        layout = window.layout()
        if layout is None or not window.isVisible():
            return
        layout.activate()
        self._width = window.width()
        free = window.screen().availableGeometry().height()
        frame = window.frameGeometry().height() - window.height()
        texts = min(layout.totalHeightForWidth(self._width), free - frame)
        # Never below the layout's own minimum, which Qt gave it before.
        window.setMinimumHeight(max(texts, layout.totalMinimumSize().height()))
