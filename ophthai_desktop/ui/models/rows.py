"""Rows the GUI lists, held in Qt's own item model so that painting never runs Python.

A view repaints by asking its model for every visible cell's text, icon, colour and
font. With a Python model each of those questions is a call into Python that has to
take the interpreter lock first, and under load the inference worker, the API server
and the watch folder hold that lock most of the time: a repaint of the patient list
then waited for the lock once per cell. Measured with a thread spinning in Python, a
repaint of 200 loaded rows took 8.7 ms (p90 12.8) from a Python model and 3.0 ms
(p90 4.4) from :class:`QStandardItemModel`, whose items are C++ (``bench/gui_stall.py``
measures the effect on the whole window).

So the values live in :class:`QStandardItem`s, written once when a row arrives and
again only where a row changed. The Python side keeps each row's record by key for the
controllers; the key is also stored on the row's first item (``KEY_ROLE``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QStandardItem, QStandardItemModel

KEY_ROLE = Qt.ItemDataRole.UserRole

AnyIndex = QModelIndex | QPersistentModelIndex


#: Cells longer than this carry their text as a tooltip too: a column may cut them.
TOOLTIP_FROM_CHARS = 20


class RowModel(QStandardItemModel):
    """Rows identified by a key, in the order they were put in (or moved to).

    Subclasses say what a row looks like: :meth:`key` and :meth:`cells` (one display
    string per column), and :meth:`style` for roles other than the text (icons,
    colours, fonts, extra data), which is given the row's previous record so that it
    writes only what changed.
    """

    def __init__(self, headers: Sequence[str], parent: Any = None) -> None:
        super().__init__(0, len(headers), parent)
        self.setHorizontalHeaderLabels(list(headers))
        self._records: dict[Hashable, Any] = {}
        self._anchors: dict[Hashable, QStandardItem] = {}  # key -> the row's first item

    # What a row looks like (subclasses) ---------------------------------------------------

    def key(self, row: Any) -> Hashable:
        raise NotImplementedError

    def cells(self, row: Any) -> Sequence[str]:
        raise NotImplementedError

    def style(self, items: Sequence[QStandardItem], row: Any, old: Any | None) -> None:
        """Set the roles besides the text; ``old`` is None for a new row."""

    # Reading ------------------------------------------------------------------------------

    def position(self, key: Hashable) -> int | None:
        anchor = self._anchors.get(key)
        return None if anchor is None else anchor.row()

    def get(self, key: Hashable) -> Any | None:
        return self._records.get(key)

    def row_at(self, position: int) -> Any | None:
        item = self.item(position, 0) if 0 <= position < self.rowCount() else None
        return None if item is None else self._records.get(item.data(KEY_ROLE))

    def records(self) -> tuple[Any, ...]:
        """Every row's record, in display order."""
        return tuple(self._records[self.item(i, 0).data(KEY_ROLE)] for i in range(self.rowCount()))

    # Writing ------------------------------------------------------------------------------

    def reset_rows(self, rows: Sequence[Any]) -> None:
        """Show exactly ``rows`` (one model reset for the views)."""
        self.beginResetModel()
        blocked = self.blockSignals(True)  # the views hear the reset, not each row
        try:
            self.removeRows(0, self.rowCount())
            self._records.clear()
            self._anchors.clear()
            for row in self._fresh(rows):
                self.appendRow(self._new_items(row))
        finally:
            self.blockSignals(blocked)
        self.endResetModel()

    def insert_rows(self, position: int, rows: Sequence[Any]) -> int:
        """Put the rows not yet shown at ``position``; returns how many were new.

        A one-column model puts them in at once: the views hear one insertion, not one
        per row (a page of 200 notifications, inserted a row at a time, held the GUI
        thread for about 25 ms with 10,000 loaded: ``bench/notifications_panel.py``)."""
        fresh = self._fresh(rows)
        if fresh and self.columnCount() == 1:
            self.invisibleRootItem().insertRows(
                position, [self._new_items(row)[0] for row in fresh]
            )
            return len(fresh)
        for offset, row in enumerate(fresh):
            self.insertRow(position + offset, self._new_items(row))
        return len(fresh)

    def update_row(self, row: Any) -> bool:
        """Show the row's new values; False if its key is not listed."""
        return self._update(row) is not None

    def update_rows(self, rows: Sequence[Any]) -> int:
        """Show the new values of many rows at once (those listed); returns how many
        were. The views hear one change over the rows' span, not one per row and role:
        marking 300 notifications read one by one ran the panel's handlers 300 times."""
        first = last = -1
        shown = 0
        blocked = self.blockSignals(True)
        try:
            for row in rows:
                position = self._update(row)
                if position is not None:
                    shown += 1
                    first = position if first < 0 else min(first, position)
                    last = max(last, position)
        finally:
            self.blockSignals(blocked)
        if shown:
            self.dataChanged.emit(self.index(first, 0), self.index(last, self.columnCount() - 1))
        return shown

    def _update(self, row: Any) -> int | None:
        """Show the row's new values; its position, or None if its key is not listed."""
        key = self.key(row)
        anchor = self._anchors.get(key)
        if anchor is None:
            return None
        old = self._records[key]
        self._records[key] = row
        position = anchor.row()
        items = [self.item(position, column) for column in range(self.columnCount())]
        for item, text, before in zip(items, self.cells(row), self.cells(old), strict=True):
            if text != before:
                item.setText(text)
                item.setToolTip(text if len(text) > TOOLTIP_FROM_CHARS else "")
        self.style(items, row, old)
        return position

    def move_row(self, row: Any, position: int) -> bool:
        """Show ``row`` (new values of a listed key) at ``position``, its place once
        moved; False if its key is not listed.

        The views hear the row inserted there and the old one removed; what pointed at
        the old one (the selection, the current row) is moved to the new one first, so
        it stays on the same record. (:class:`QStandardItemModel` has no ``moveRows``,
        and taking its items out invalidates what points at them.)
        """
        key = self.key(row)
        start = self.position(key)
        if start is None:
            return False
        target = position if position <= start else position + 1  # counting the old row
        self.insertRow(target, self._new_items(row))  # the key's record and anchor now
        old = start + 1 if target <= start else start
        pointing = [index for index in self.persistentIndexList() if index.row() == old]
        self.changePersistentIndexList(
            pointing, [self.index(target, index.column()) for index in pointing]
        )
        self.removeRow(old)
        return True

    def place_rows(self, position: int, rows: Sequence[Any], keep: AbstractSet[Hashable]) -> int:
        """Show ``rows`` in order from ``position`` on, changing only what differs: a
        listed row whose key is not in ``keep`` met there is removed, one in its place
        is updated if its values changed, one listed elsewhere is moved there, a new one
        inserted. Returns the position after the last of them.

        A key met a second time (a list read in parts, not at one moment: a job read
        as queued, then as finished) is shown once, at its later place with its later
        values. The job queue's read is one snapshot (``JobService.list_queue``); this
        stays as a second line of defence, since a duplicate key would break the model.

        Rows keep their items, so the selection and the scroll position stay with them,
        and a list read again that changed little costs little (putting 10,000 rows in
        anew held the GUI thread for half a second).
        """
        for row in rows:
            key = self.key(row)
            while position < self.rowCount():
                there = self.item(position, 0).data(KEY_ROLE)
                if there in keep:
                    break
                self.remove_row(there)  # no longer in the list
            if position < self.rowCount() and self.item(position, 0).data(KEY_ROLE) == key:
                if self._records[key] != row:
                    self.update_row(row)
            elif key in self._records:
                start = self.position(key)
                if start is not None and start < position:  # placed already, by these rows
                    self.move_row(row, position - 1)  # its place once taken out
                    continue  # the next row goes where this one was put
                self.move_row(row, position)
            else:
                self.insertRow(position, self._new_items(row))
            position += 1
        return position

    def remove_rows_from(self, position: int) -> None:
        """Remove every row from ``position`` to the end."""
        if position >= self.rowCount():
            return
        for offset in range(self.rowCount() - position):
            key = self.item(position + offset, 0).data(KEY_ROLE)
            self._records.pop(key, None)
            self._anchors.pop(key, None)
        self.removeRows(position, self.rowCount() - position)

    def remove_row(self, key: Hashable) -> bool:
        anchor = self._anchors.pop(key, None)
        if anchor is None:
            return False
        del self._records[key]
        self.removeRow(anchor.row())
        return True

    def _fresh(self, rows: Sequence[Any]) -> list[Any]:
        """The rows whose keys are not listed yet (the first of repeated keys)."""
        seen: set[Hashable] = set()
        fresh = []
        for row in rows:
            key = self.key(row)
            if key not in self._records and key not in seen:
                seen.add(key)
                fresh.append(row)
        return fresh

    def _new_items(self, row: Any) -> list[QStandardItem]:
        key = self.key(row)
        items = []
        for text in self.cells(row):
            item = QStandardItem(text)
            if len(text) > TOOLTIP_FROM_CHARS:
                item.setToolTip(text)  # whole, where the column cuts it short
            items.append(item)
        items[0].setData(key, KEY_ROLE)
        self.style(items, row, None)
        self._records[key] = row
        self._anchors[key] = items[0]
        return items


class PagedRowModel(RowModel):
    """A :class:`RowModel` that holds the first pages of a longer list and asks for
    the next when the view scrolls to the end (Qt's ``canFetchMore``/``fetchMore``).

    Signals:
        more_requested(int skip): the view wants the next page, starting at ``skip``.
    """

    more_requested = Signal(int)

    def __init__(self, headers: Sequence[str], parent: Any = None) -> None:
        super().__init__(headers, parent)
        self._total = 0
        self._fetching = False
        # Rows put first (:meth:`insert_first`) since the page on its way was asked for.
        self._arrived_while_fetching = 0

    def canFetchMore(self, parent: AnyIndex = QModelIndex()) -> bool:
        return not parent.isValid() and not self._fetching and self.rowCount() < self._total

    def fetchMore(self, parent: AnyIndex = QModelIndex()) -> None:
        if self.canFetchMore(parent):
            self._fetching = True
            self._arrived_while_fetching = 0
            self.more_requested.emit(self.rowCount())

    @property
    def total(self) -> int:
        """How many rows the list has (loaded or not)."""
        return self._total

    @property
    def loaded(self) -> int:
        return self.rowCount()

    def reset(self, rows: Sequence[Any], total: int) -> None:
        """Replace everything with the first page of a new query."""
        self._total = total
        self._fetching = False
        self._arrived_while_fetching = 0
        self.reset_rows(rows)

    def append(self, rows: Sequence[Any], total: int | None = None) -> None:
        """Add the next page (rows already shown are skipped); ``total`` is the list's
        length when the page was read (None: the rows are the rest of a read already
        counted, and the total stays).

        Rows put first while the page was on its way are counted on top of it: read
        before them, it did not count them, and taking its ``total`` as it was dropped
        them, so the list stopped one row short of its end (the oldest notification never
        listed). One stored before the read but heard after it is counted twice: the list
        then asks once more at its end, and that page's total puts it right. (A row
        removed meanwhile is not taken off: counted or not by the page, one too many
        costs that one read, one too few a row never listed.)"""
        self._fetching = False
        arrived, self._arrived_while_fetching = self._arrived_while_fetching, 0
        self.insert_rows(self.rowCount(), rows)
        counted = self._total if total is None else total + arrived
        self._total = max(counted, self.rowCount())

    def settle(self, total: int) -> None:
        """The rows read again are all placed (:meth:`place_rows`): ``total`` is the
        list's length now, and a scroll to the end asks for the next page again."""
        self._fetching = False
        self._total = max(total, self.rowCount())

    def trim(self, keep: int) -> bool:
        """Drop the loaded rows past the first ``keep``: a window left open for weeks
        would otherwise hold every row that ever arrived. They are read again from the
        database as the view scrolls to them. Nothing is dropped while a page is on its
        way (it goes after the rows loaded when it was asked for). Returns whether rows
        were dropped."""
        if self._fetching or self.rowCount() <= keep:
            return False
        self.remove_rows_from(keep)
        return True

    def fetch_failed(self) -> None:
        """The page did not arrive; a later scroll asks again."""
        self._fetching = False
        self._arrived_while_fetching = 0

    def insert_first(self, rows: Sequence[Any]) -> None:
        """New rows at the top (``rows`` newest first); those already listed show their
        new values instead."""
        fresh = [row for row in rows if not self.update_row(row)]
        added = self.insert_rows(0, fresh)
        self._total += added
        if self._fetching:
            self._arrived_while_fetching += added

    def remove(self, key: Hashable) -> bool:
        if not self.remove_row(key):
            return False
        self._total = max(0, self._total - 1)
        return True
