"""Keeping a table's columns within its width: one column takes the room the others
leave (its text cut short with an ellipsis, whole in the tooltip), and the columns that
do not fit beside it are hidden, the least needed first, rather than the table scrolling
sideways (at 1024 px wide the patient list and the job queue did). The widths and
row heights chosen for the design's font grow with the font, also one changed while the
window is open."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence

from PySide6.QtCore import QEvent, QObject, Qt, Slot
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QHeaderView, QTableView, QTableWidget

from ophthai_desktop.ui.views.reflow import room_in
from ophthai_desktop.ui.views.scale import scaled

log = logging.getLogger(__name__)


class FittedColumns(QObject):
    """Fits ``table``'s columns to its width.

    ``stretch`` is the column that takes what the others leave, at least ``least_px``;
    ``order`` lists the other columns, most needed first: each is shown while it fits
    beside the stretching column and those before it, at its width (``widths``, or set
    by the caller, or dragged by the clinician), and the rest are hidden until the table
    is wider. The columns the clinician chose to hide (:meth:`set_chosen_hidden`) stay
    hidden and take no room. Only widths are used: no cell is asked for its size.

    ``least_px`` and ``widths`` are for the design's font, grown with the table's
    (:func:`~ophthai_desktop.ui.views.scale.scaled`): at start-up and again by
    :meth:`follow_font` (a column the clinician dragged keeps its width). The widths
    the clinician dragged are kept between runs (:meth:`dragged_widths`,
    :meth:`restore_dragged_widths`).
    """

    def __init__(
        self,
        table: QTableView,
        *,
        stretch: int,
        least_px: int,
        order: Sequence[int],
        widths: Mapping[int, int] | None = None,
    ) -> None:
        super().__init__(table)
        self._table = table
        self._stretch = stretch
        self._least_design_px = least_px
        self._least_px = scaled(table, least_px)
        self._order = [column for column in order if column != stretch]
        self._design = {c: w for c, w in (widths or {}).items() if c in self._order}
        self._dragged: set[int] = set()
        self._chosen: set[int] = set()
        self._no_room: set[int] = set()
        self._fitting = False
        header = table.horizontalHeader()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
        self._widths = {column: header.sectionSize(column) for column in self._order}
        header.sectionResized.connect(self._on_header_section_resized)
        self.follow_font()

    def follow_font(self) -> None:
        """Size the columns for the table's font now (called by
        :class:`FittingTableView` when it changes): set once at start-up, "Age" read
        "Ag" after the desktop's font grew with the window open. A width the clinician
        dragged stays theirs."""
        self._least_px = scaled(self._table, self._least_design_px)
        header = self._table.horizontalHeader()
        self._fitting = True
        try:
            for column, px in self._design.items():
                if column not in self._dragged:
                    self._widths[column] = scaled(self._table, px)
                    header.resizeSection(column, self._widths[column])  # also hidden
        finally:
            self._fitting = False
        self.fit()

    @property
    def no_room(self) -> frozenset[int]:
        """The columns hidden because the table is too narrow for them."""
        return frozenset(self._no_room)

    @property
    def chosen_hidden(self) -> frozenset[int]:
        return frozenset(self._chosen)

    def dragged_widths(self) -> str:
        """The widths the clinician dragged, for :meth:`restore_dragged_widths` at the
        next start, with the titles of the table's columns then."""
        header = self._table.horizontalHeader()
        widths = {
            str(column): self._widths[column]
            for column in sorted(self._dragged)
            if header.sectionResizeMode(column) == QHeaderView.ResizeMode.Interactive
        }
        return json.dumps({"columns": self._titles(), "widths": widths})

    def restore_dragged_widths(self, saved: str) -> bool:
        """Give the columns the widths :meth:`dragged_widths` gave, as if dragged again
        (they keep them as the table or its font changes); the others go on fitting.
        Widths saved for other columns (one added or removed since) or unreadable are
        ignored (False): the columns fit as they would without them. So is a width too
        wide for the table's screen (dragged on a wider one): its column, and those
        after it, would stay hidden at any window size, with no edge left to drag."""
        try:
            state = json.loads(saved)
            titles = state["columns"]
            widths = {int(column): int(px) for column, px in state["widths"].items()}
        except (TypeError, ValueError, KeyError, AttributeError):
            log.warning("the saved widths of %s are unreadable: ignored", self._table.objectName())
            return False
        if titles != self._titles():
            log.info("the columns of %s changed: saved widths ignored", self._table.objectName())
            return False
        header = self._table.horizontalHeader()
        least_px = header.minimumSectionSize()
        most_px = self._widest_on_screen()
        self._fitting = True
        try:
            for column, px in widths.items():
                if px > most_px:
                    log.info(
                        "a saved width of %s is wider than the screen: ignored",
                        self._table.objectName(),
                    )
                elif (
                    column in self._widths
                    and header.sectionResizeMode(column) == QHeaderView.ResizeMode.Interactive
                ):
                    self._widths[column] = max(least_px, px)
                    self._dragged.add(column)
                    header.resizeSection(column, self._widths[column])  # also hidden
        finally:
            self._fitting = False
        self.fit()
        return True

    def _widest_on_screen(self) -> int:
        """The widest a column can be and still be shown: beside the stretching column
        at its narrowest, in the table as wide as its screen."""
        table = self._table
        chrome = table.width() - room_in(table)  # its frame and vertical scroll bar
        return table.screen().availableGeometry().width() - chrome - self._least_px

    def _titles(self) -> list[str]:
        """The titles of the table's columns, which tell one set of columns from
        another."""
        model = self._table.model()
        if model is None:
            return []
        horizontal = Qt.Orientation.Horizontal
        return [str(model.headerData(c, horizontal)) for c in range(model.columnCount())]

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
        self._dragged.add(column)
        self.fit()


class _FitsColumns:
    """What :class:`FittingTableView` and :class:`FittingTableWidget` share: the
    columns fit again at each resize of the table, and follow a change of its font, as
    its rows' height does. A resize and a change, not an event filter: a Python event
    filter would be called at every paint of the table."""

    columns: FittedColumns | None = None
    _row_px = 0  # the rows' height at the design's font (0: not set here)

    def fit_columns(
        self,
        *,
        stretch: int,
        least_px: int,
        order: Sequence[int],
        widths: Mapping[int, int] | None = None,
    ) -> FittedColumns:
        """Fit the columns from now on (see :class:`FittedColumns`)."""
        assert isinstance(self, QTableView)
        self.columns = FittedColumns(
            self, stretch=stretch, least_px=least_px, order=order, widths=widths
        )
        return self.columns

    def set_row_height(self, px: int) -> None:
        """Rows of ``px`` at the design's font, grown with the table's font (fixed: no
        row is asked for its size)."""
        assert isinstance(self, QTableView)
        self._row_px = px
        vertical = self.verticalHeader()
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vertical.setDefaultSectionSize(scaled(self, px))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)  # type: ignore[misc]
        if self.columns is not None:
            self.columns.fit()

    def changeEvent(self, event: QEvent) -> None:
        """A new font (the desktop's setting changed with the window open): the sizes
        chosen for the design's font follow it, once, here rather than at each paint."""
        super().changeEvent(event)  # type: ignore[misc]
        if event.type() == QEvent.Type.FontChange:
            if self._row_px:
                self.set_row_height(self._row_px)
            if self.columns is not None:
                self.columns.follow_font()


class FittingTableView(_FitsColumns, QTableView):
    """A table view whose columns fit its width once :meth:`fit_columns` is called."""


class FittingTableWidget(_FitsColumns, QTableWidget):
    """A table widget whose columns fit its width once :meth:`fit_columns` is called."""
