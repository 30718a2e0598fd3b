"""Which rows of a list are chosen: the others, not a neighbour, when a chosen row goes;
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
    """Take the rows removed from ``model`` out of ``view``'s choice, and nothing else:
    where several are selected, the others stay selected.

    The current row (the one the keyboard is on), removed, goes to the nearest row still
    selected, or to none (a single-selection view then selects no neighbour): it is not
    left to the view, which would put it on the next row and, in a single-selection view,
    select that. (Clearing the whole selection instead took a job whose patient was
    deleted out of a multi-selection in the job queue, and with it every other job the
    clinician had chosen to cancel.)

    Call before ``view.setModel(model)``: this handler must run before the view's own.
    (A row moved with :meth:`RowModel.move_row` takes the selection with it before the
    old one goes.)
    """

    def about_to_remove(parent: QModelIndex | QPersistentModelIndex, first: int, last: int) -> None:
        chosen = view.selectionModel()
        if chosen is None or parent.isValid():
            return
        current = view.currentIndex()
        if not current.isValid() or not first <= current.row() <= last:
            return  # the selected rows among those removed just leave the selection
        staying = sorted(
            (index.row() for index in chosen.selectedRows() if not first <= index.row() <= last),
            key=lambda row: abs(row - current.row()),
        )
        to = model.index(staying[0], current.column()) if staying else QModelIndex()
        chosen.setCurrentIndex(to, QItemSelectionModel.SelectionFlag.NoUpdate)

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
