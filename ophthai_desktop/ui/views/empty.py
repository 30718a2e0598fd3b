"""A list or table that says so when it has no rows, instead of showing a blank box."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, Qt, Slot
from PySide6.QtWidgets import QAbstractItemView, QLabel, QStackedWidget, QWidget

#: The panels' smallest height (two rows of a list).
MIN_HEIGHT = 44

#: What a list says until its first rows are read: "No notifications." while four
#: unread ones were being read (seconds, at start on a busy machine) was untrue.
READING = "Reading…"

#: What it says while that first read fails and is tried again (the banner says why).
NOT_READ = "Not read yet: trying again."


class EmptyOr(QStackedWidget):
    """Shows ``view`` while its model has rows, and ``text`` while it has none: once its
    first rows were read (:meth:`rows_read`); :data:`READING` until then.

    It follows the model's row signals (a handful per change), not the view's events:
    an event filter would run Python for every paint of the view.
    """

    def __init__(self, view: QAbstractItemView, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self._empty_text = text
        self._read = False
        self.hint = QLabel(READING)
        self.hint.setObjectName("emptyHint")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setWordWrap(True)
        self.addWidget(view)
        self.addWidget(self.hint)
        # A couple of rows at least, not the views' own ~70 px: the docks holding these
        # panels then let the window fit an 800x600 screen.
        self.setMinimumHeight(MIN_HEIGHT)
        view.setMinimumHeight(MIN_HEIGHT)
        model: QAbstractItemModel = view.model()
        model.rowsInserted.connect(self._follow)
        model.rowsRemoved.connect(self._follow)
        model.modelReset.connect(self._follow)
        self._follow()

    @Slot()
    def _follow(self) -> None:
        empty = self.view.model().rowCount() == 0
        self.setCurrentWidget(self.hint if empty else self.view)

    def is_empty_shown(self) -> bool:
        return self.currentWidget() is self.hint

    def rows_read(self) -> None:
        """Its first rows were read: from now on no rows means none."""
        self._read = True
        if self.hint.text() != self._empty_text:
            self.hint.setText(self._empty_text)

    def read_failed(self) -> None:
        """Its first read failed and is tried again (a later read's failure leaves the
        rows, or "none", as they were read)."""
        if not self._read:
            self.hint.setText(NOT_READ)
