"""A list or table that says so when it has no rows, instead of showing a blank box."""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, Qt, Slot
from PySide6.QtWidgets import QAbstractItemView, QLabel, QStackedWidget, QWidget

#: The panels' smallest height (two rows of a list).
MIN_HEIGHT = 44


class EmptyOr(QStackedWidget):
    """Shows ``view`` while its model has rows, and ``text`` while it has none.

    It follows the model's row signals (a handful per change), not the view's events:
    an event filter would run Python for every paint of the view.
    """

    def __init__(self, view: QAbstractItemView, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.hint = QLabel(text)
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
