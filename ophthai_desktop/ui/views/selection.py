"""Which row of a list is chosen: none, not its neighbour, when the chosen row goes;
the one the keyboard is on, in a list whose choice opens nothing.

Qt moves the current index of a view to the next row when the current row is removed,
and in a single-selection view that selects it: a job of a deleted patient taken off the
queue left the job below it selected, and Cancel then stopped an analysis the clinician
never chose (as Delete would delete another notification).
"""

from __future__ import annotations

from PySide6.QtCore import (
    QAbstractItemModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
)
from PySide6.QtWidgets import QAbstractItemView


def choose_nothing_when_the_chosen_row_goes(
    view: QAbstractItemView, model: QAbstractItemModel
) -> None:
    """Clear ``view``'s selection and current row as they are removed from ``model``.

    Call before ``view.setModel(model)``: this handler must run before the view's own,
    which moves the current row to a neighbour. (A row moved with
    :meth:`RowModel.move_row` takes the selection with it before the old one goes.)
    """

    def about_to_remove(parent: QModelIndex | QPersistentModelIndex, first: int, last: int) -> None:
        chosen = view.selectionModel()
        if chosen is None or parent.isValid():
            return
        current = view.currentIndex()
        rows = [index.row() for index in chosen.selectedRows()]
        if current.isValid():
            rows.append(current.row())
        if any(first <= row <= last for row in rows):
            chosen.clear()

    model.rowsAboutToBeRemoved.connect(about_to_remove)


def choose_the_row_the_keyboard_is_on(view: QAbstractItemView) -> None:
    """Choose (select) the row the keyboard comes to in ``view`` when none is chosen.

    Qt gives a view reached by Tab or F6 a current row without selecting it, and an
    arrow key that cannot move (one row, or Up on the first) chooses nothing: in the job
    queue with one analysis, the keyboard stood on its row and Cancel and Enter, which
    act on the chosen row, could not be had. Only for a view whose selection opens
    nothing (the patient list's opens the patient). Call after ``view.setModel``.
    """

    def current_changed(current: QModelIndex, _previous: QModelIndex) -> None:
        chosen = view.selectionModel()
        if current.isValid() and view.hasFocus() and not chosen.hasSelection():
            chosen.select(
                current,
                QItemSelectionModel.SelectionFlag.ClearAndSelect
                | QItemSelectionModel.SelectionFlag.Rows,
            )

    view.selectionModel().currentChanged.connect(current_changed)
