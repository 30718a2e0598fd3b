"""How many of a list's loaded rows the clinician is using: those down to the last one
in view, and the chosen one; and, while the list is hidden, as many as when it was
hidden."""

from __future__ import annotations

from PySide6.QtCore import QObject, QPoint, SignalInstance, Slot
from PySide6.QtWidgets import QAbstractItemView, QDockWidget


def rows_in_use(view: QAbstractItemView) -> int:
    """The rows from the top of ``view`` that a trimmed list must keep: down to the last
    one shown (none while the view is hidden) and the current one. With its end in view
    (the rows end above the viewport's bottom) every row is in use."""
    current = view.currentIndex()
    kept = current.row() + 1 if current.isValid() else 0
    if view.isVisible():
        viewport = view.viewport()
        bottom = view.indexAt(QPoint(1, viewport.height() - 1))
        rows = view.model().rowCount()
        kept = max(kept, bottom.row() + 1 if bottom.isValid() else rows)
    return kept


class RowsInUse(QObject):
    """:func:`rows_in_use` of a view that also counts, while the view is hidden, the
    rows that were in use as it was hidden (its dock closed, the window hidden to the
    tray): a list trimmed meanwhile dropped the rows a clinician had scrolled to, and
    showed them elsewhere when opened again. It keeps no more than that, however long
    it stays hidden (the controller asks for no more rows while it is).

    Told by signals that fire only as the view hides or shows (painting the view runs
    no Python): ``window_hiding`` fires while the view is still shown, and the
    ``dock`` holding the view tells as it closes or opens.
    """

    def __init__(
        self,
        view: QAbstractItemView,
        window_hiding: SignalInstance,
        dock: QDockWidget | None = None,
    ) -> None:
        super().__init__(view)
        self._view = view
        self._when_hidden = 0
        window_hiding.connect(self._on_window_hiding)
        if dock is not None:
            dock.visibilityChanged.connect(self._on_dock_visibility_changed)

    def count(self) -> int:
        """The rows from the top of the view that a trimmed list must keep."""
        if self._view.isVisible():
            return rows_in_use(self._view)
        return max(self._when_hidden, rows_in_use(self._view))

    @Slot()
    def _on_window_hiding(self) -> None:
        if self._view.isVisible():  # else hidden already, and counted then
            self._when_hidden = rows_in_use(self._view)

    @Slot(bool)
    def _on_dock_visibility_changed(self, visible: bool) -> None:
        if not visible:
            self._on_window_hiding()  # the view is still shown as the dock closes
        else:
            # Shown at the end of its rows, it reads the next (Qt looks as it lays the
            # rows out): none were read while it was hidden.
            self._view.doItemsLayout()
