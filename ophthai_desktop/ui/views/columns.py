"""Keeping a table's columns within its width: one column takes the room the others
leave (its text cut short with an ellipsis, whole in the tooltip), and the columns that
do not fit beside it are hidden, the least needed first, rather than the table scrolling
sideways (at 1024 px wide the patient list and the job queue did)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QHeaderView, QTableView, QTableWidget

from ophthai_desktop.ui.views.reflow import room_in


class FittedColumns(QObject):
    """Fits ``table``'s columns to its width.

    ``stretch`` is the column that takes what the others leave, at least ``least_px``;
    ``order`` lists the other columns, most needed first: each is shown while it fits
    beside the stretching column and those before it, at its width (set by the caller,
    or dragged by the clinician), and the rest are hidden until the table is wider. The
    columns the clinician chose to hide (:meth:`set_chosen_hidden`) stay hidden and take
    no room. Only widths are used: no cell is asked for its size.
    """

    def __init__(
        self, table: QTableView, *, stretch: int, least_px: int, order: Sequence[int]
    ) -> None:
        super().__init__(table)
        self._table = table
        self._stretch = stretch
        self._least_px = least_px
        self._order = [column for column in order if column != stretch]
        self._chosen: set[int] = set()
        self._no_room: set[int] = set()
        self._fitting = False
        header = table.horizontalHeader()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
        self._widths = {column: header.sectionSize(column) for column in self._order}
        header.sectionResized.connect(self._on_header_section_resized)
        self.fit()

    @property
    def no_room(self) -> frozenset[int]:
        """The columns hidden because the table is too narrow for them."""
        return frozenset(self._no_room)

    @property
    def chosen_hidden(self) -> frozenset[int]:
        return frozenset(self._chosen)

    def set_widths(self, widths: Mapping[int, int]) -> None:
        """The widths the columns need (where their content sets them)."""
        self._widths.update((c, w) for c, w in widths.items() if c in self._widths)
        self.fit()

    def set_chosen_hidden(self, columns: Iterable[int]) -> None:
        """Hide ``columns`` whatever the width (the stretching one is always shown)."""
        self._chosen = set(columns) - {self._stretch}
        self.fit()

    def fit(self) -> None:
        """Show the columns that fit the table's width now, hide the others (called by
        :class:`FittingTableView` when the table is resized)."""
        room = room_in(self._table)  # the vertical scroll bar counted, shown or not
        used = self._least_px
        no_room: set[int] = set()
        for column in self._order:
            if column in self._chosen:
                continue
            if no_room or used + self._widths[column] > room:
                no_room.add(column)  # and every column after it: the order is kept
            else:
                used += self._widths[column]
        self._no_room = no_room
        self._fitting = True
        try:
            header = self._table.horizontalHeader()
            header.setSectionHidden(self._stretch, False)
            for column in self._order:
                hidden = column in self._chosen or column in no_room
                if header.isSectionHidden(column) != hidden:
                    header.setSectionHidden(column, hidden)
        finally:
            self._fitting = False

    @Slot(int, int, int)
    def _on_header_section_resized(self, column: int, _old: int, new: int) -> None:
        """The clinician dragged a column wider or narrower: it keeps that width, and
        the others fit again."""
        if self._fitting or new <= 0 or column not in self._widths:
            return
        self._widths[column] = new
        self.fit()


class _FitsColumns:
    """What :class:`FittingTableView` and :class:`FittingTableWidget` share: the
    columns fit again at each resize of the table. A resize, not an event filter: a
    Python event filter would be called at every paint of the table."""

    columns: FittedColumns | None = None

    def fit_columns(self, *, stretch: int, least_px: int, order: Sequence[int]) -> FittedColumns:
        """Fit the columns from now on (see :class:`FittedColumns`)."""
        assert isinstance(self, QTableView)
        self.columns = FittedColumns(self, stretch=stretch, least_px=least_px, order=order)
        return self.columns

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)  # type: ignore[misc]
        if self.columns is not None:
            self.columns.fit()


class FittingTableView(_FitsColumns, QTableView):
    """A table view whose columns fit its width once :meth:`fit_columns` is called."""


class FittingTableWidget(_FitsColumns, QTableWidget):
    """A table widget whose columns fit its width once :meth:`fit_columns` is called."""
