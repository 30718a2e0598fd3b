"""The patient list: search box, status filter and the table."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from PySide6.QtCore import QItemSelection, QPoint, QRect, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.core.domain import PatientStatus
from ophthai_desktop.ui.models.patient_table import COLUMN_OF, COLUMNS, PatientTableModel
from ophthai_desktop.ui.views.columns import FittingTableView
from ophthai_desktop.ui.views.selection import choose_nothing_when_the_chosen_row_goes

ALL_STATUSES = "All statuses"
#: Starting width of each column, by its order_by key.
COLUMN_WIDTHS = {
    "name": 150,
    "status": 134,
    "age": 40,
    "gender": 60,
    "id": 116,
    "workflow_step": 110,
    "admission_date": 90,
    "appointment_date": 128,
}
#: The least width of the name, which takes what the other columns leave (the columns
#: that do not fit beside it are hidden, the last first, until the list is wider).
NAME_LEAST_PX = 80


class PatientListView(QWidget):
    """Search, filter and pick a patient.

    Signals:
        search_edited(str): the search text changed (every keystroke; the controller
            debounces).
        status_chosen(object): a status value, or None for all.
        patient_selected(object): the chosen patient's id, or None.
        delete_requested(): the Delete key in the table (the chosen patient).
    """

    search_edited = Signal(str)
    status_chosen = Signal(object)
    patient_selected = Signal(object)
    delete_requested = Signal()

    def __init__(self, model: PatientTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.search = QLineEdit()
        self.search.setObjectName("patientSearch")
        self.search.setPlaceholderText("Search name or ID…")
        self.search.setClearButtonEnabled(True)
        self.search.setAccessibleName("Search patients by name or ID")
        self.status = QComboBox()
        self.status.setObjectName("statusFilter")
        self.status.setAccessibleName("Status filter")
        # Its label, its buddy: on Linux a screen reader names a combo box by the label
        # that is its buddy, its accessible name being its current value ("All
        # statuses", heard as if it were what the box is). Alt+S goes to it.
        self.status_label = QLabel("&Status")
        self.status_label.setBuddy(self.status)
        self.status.addItem(ALL_STATUSES, None)
        for status in PatientStatus:
            self.status.addItem(status.value, status.value)
        self.count = QLabel("")
        self.count.setObjectName("muted")
        # Wraps where the list is narrow: on one line, "Showing 200 of 10,000 patients
        # (scroll for more)" held the list, and the window, wider than an 800 px screen.
        self.count.setWordWrap(True)

        self.table = FittingTableView()
        self.table.setObjectName("patientTable")
        self.table.setAccessibleName("Patients")
        choose_nothing_when_the_chosen_row_goes(self.table, model)  # before setModel
        self.table.setModel(model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.setShowGrid(False)
        self.table.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.table.verticalHeader().setVisible(False)
        # Fixed heights and widths: nothing asks data() about rows that are not shown.
        self.table.set_row_height(26)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSortIndicatorShown(True)
        header.setSortIndicator(-1, Qt.SortOrder.DescendingOrder)
        # The list never scrolls sideways: the name takes the room left (cut short with
        # an ellipsis) and the columns after the status give way, last first, where the
        # list is narrow (at 1024 px wide it scrolled to show the rest of the row). The
        # widths grow with a larger font, also one set with the window open: at 1.5
        # times the size, "Pending Analysis" was cut, and "Age" read "Ag".
        self.columns = self.table.fit_columns(
            stretch=COLUMN_OF["name"],
            least_px=NAME_LEAST_PX,
            order=range(len(COLUMNS)),
            widths={column: COLUMN_WIDTHS[key] for column, (key, _title) in enumerate(COLUMNS)},
        )
        # Right-click on the header chooses the columns (hiding some makes room for
        # those after them).
        header.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        header.customContextMenuRequested.connect(self._on_header_menu_requested)
        self.table.setSortingEnabled(True)
        # Tab leaves the table for the patient page (it moved from cell to cell, and
        # from a row's last cell to the next row, which opened that patient).
        self.table.setTabKeyNavigation(False)
        delete = QShortcut(QKeySequence.StandardKey.Delete, self.table)
        delete.setContext(Qt.ShortcutContext.WidgetShortcut)
        delete.setWhatsThis("Delete the chosen patient (after asking)")  # Help's list
        delete.activated.connect(self.delete_requested)
        # The order and the columns from the keyboard too: the header, which chooses
        # them by click and right-click, takes no focus, and they were the mouse's alone.
        menu_keys = QShortcut(QKeySequence(Qt.Key.Key_Menu), self.table)
        menu_keys.setKeys([QKeySequence(Qt.Key.Key_Menu), QKeySequence("Shift+F10")])
        menu_keys.setContext(Qt.ShortcutContext.WidgetShortcut)
        menu_keys.setWhatsThis("Sort the list, choose its columns")  # Help's list
        menu_keys.activated.connect(self._on_menu_keys_activated)

        # The empty list says why, where the clinician looks: in the table, centred
        # (under it, "No patients match" went unseen). A label in a layout on the
        # viewport: Qt keeps it centred as the table resizes, and painting the table
        # runs no Python for it.
        self.empty_hint = QLabel()
        self.empty_hint.setObjectName("emptyHint")
        self.empty_hint.setTextFormat(Qt.TextFormat.PlainText)  # the search is not markup
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.empty_hint.hide()
        hint_layout = QVBoxLayout(self.table.viewport())
        hint_layout.setContentsMargins(12, 12, 12, 12)
        hint_layout.addWidget(self.empty_hint)
        model.rowsInserted.connect(self._on_model_rows_changed)
        model.modelReset.connect(self._on_model_rows_changed)

        filters = QHBoxLayout()
        filters.addWidget(self.search, 1)
        filters.addWidget(self.status_label)
        filters.addWidget(self.status)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(filters)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.count)

        self.search.textEdited.connect(self.search_edited)
        self.status.currentIndexChanged.connect(self._on_status_index_changed)
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        # Enter opens the patient the keyboard is on (after a search and Tab, the focus
        # is on a row that is not chosen; only Space chose it). Keys of their own, not the
        # view's activated signal, so that Help's list of keys names them as it names the
        # job queue's and the notifications'.
        for keys in (QKeySequence(Qt.Key.Key_Return), QKeySequence(Qt.Key.Key_Enter)):
            open_key = QShortcut(keys, self.table)
            open_key.setContext(Qt.ShortcutContext.WidgetShortcut)
            open_key.setWhatsThis("Open the patient the keyboard is on")  # Help's list
            open_key.activated.connect(self._on_open_key_activated)
        # Down in the search box goes to the rows it found, as in a mail client's search:
        # it did nothing, and only Tab (past the status filter's label) reached them.
        to_rows = QShortcut(QKeySequence(Qt.Key.Key_Down), self.search)
        to_rows.setContext(Qt.ShortcutContext.WidgetShortcut)
        to_rows.setWhatsThis("From the search box to the patients it found")  # Help's list
        to_rows.activated.connect(self._on_search_down_activated)

    @Slot()
    def _on_search_down_activated(self) -> None:
        """The focus to the table, on the row the keyboard was on (the first one where
        it was on none: the focus reason is Tab's, for which the view puts it there)."""
        self.table.setFocus(Qt.FocusReason.TabFocusReason)

    def select_patient(self, patient_id: str | None, *, scroll: bool = True) -> bool:
        """Select the patient's row (without emitting a new selection) and, with
        ``scroll``, bring it into view; False if the patient is not among the loaded
        rows."""
        row = self.model.row_of(patient_id) if patient_id else None
        blocker = self.table.selectionModel().blockSignals(True)
        try:
            if row is None:
                self.table.clearSelection()
                return False
            auto_scroll = self.table.hasAutoScroll()
            self.table.setAutoScroll(scroll)  # selecting a row scrolls to it otherwise
            try:
                self.table.selectRow(row)
            finally:
                self.table.setAutoScroll(auto_scroll)
            if scroll:
                # The scroll range takes in rows just loaded first: right after a new
                # query's rows it was still the old query's, and scrolling to the row
                # stopped at its end (nothing moved after a search of one row).
                self.table.doItemsLayout()
                self.table.scrollTo(self.model.index(row, 0))
            return True
        finally:
            self.table.selectionModel().blockSignals(blocker)

    def selected_patient_id(self) -> str | None:
        """The id of the patient whose row is chosen, or None."""
        rows = self.table.selectionModel().selectedRows()
        return self.model.patient_id_at(rows[0].row()) if rows else None

    def column_menu(self) -> QMenu:
        """A menu of the columns with a check mark on those chosen to be shown (the name
        is always shown), and which of them the list is too narrow for."""
        menu = QMenu("Columns", self)
        chosen_hidden = self.columns.chosen_hidden
        for column, (key, title) in enumerate(COLUMNS):
            if key == "name":
                continue
            action = menu.addAction(title)
            action.setCheckable(True)
            action.setChecked(column not in chosen_hidden)
            action.toggled.connect(
                lambda shown, column=column: self._on_column_toggled(column, shown)
            )
        no_room = [
            title for column, (_k, title) in enumerate(COLUMNS) if column in self.columns.no_room
        ]
        if no_room:
            menu.addSeparator()
            note = menu.addAction(f"No room for {', '.join(no_room)}: widen the list")
            note.setEnabled(False)
        return menu

    def sort_menu(self) -> QMenu:
        """A menu of the columns to sort the list by, the one it is sorted by checked
        (chosen again, its order reverses, as a click on its header does)."""
        menu = QMenu("Sort by", self)
        header = self.table.horizontalHeader()
        sorted_by = header.sortIndicatorSection()
        for column, (_key, title) in enumerate(COLUMNS):
            action = menu.addAction(title)
            action.setCheckable(True)
            action.setChecked(column == sorted_by)
            action.triggered.connect(lambda _checked, column=column: self._sort_by(column))
        return menu

    def _sort_by(self, column: int) -> None:
        header = self.table.horizontalHeader()
        order = Qt.SortOrder.AscendingOrder
        if column == header.sortIndicatorSection():
            ascending = header.sortIndicatorOrder() == Qt.SortOrder.AscendingOrder
            order = Qt.SortOrder.DescendingOrder if ascending else Qt.SortOrder.AscendingOrder
        self.table.sortByColumn(column, order)

    @Slot()
    def _on_menu_keys_activated(self) -> None:
        menu = QMenu(self)
        submenus = (self.sort_menu(), self.column_menu())
        for submenu in submenus:
            menu.addMenu(submenu)
        menu.exec(self.table.viewport().mapToGlobal(self._menu_keys_point()))
        for each in (menu, *submenus):
            each.deleteLater()

    def _menu_keys_point(self) -> QPoint:
        """Where the menu of the menu keys opens, in the viewport: under the current
        row where it is in sight, else at the list's top-left (under a row scrolled out
        of sight, the menu opened beside the list, or off the window)."""
        viewport = self.table.viewport().rect()
        index = self.table.currentIndex()
        row = self.table.visualRect(index) if index.isValid() else QRect()
        if not row.intersects(viewport):
            return viewport.topLeft()
        # A row half in sight: the menu at the edge of what is seen of it.
        return QPoint(max(row.left(), 0), min(row.bottom(), viewport.bottom()))

    def _on_column_toggled(self, column: int, shown: bool) -> None:
        hidden = set(self.columns.chosen_hidden)
        if shown:
            hidden.discard(column)
        else:
            hidden.add(column)
        self.columns.set_chosen_hidden(hidden)

    @Slot(QPoint)
    def _on_header_menu_requested(self, position: QPoint) -> None:
        menu = self.column_menu()
        menu.exec(self.table.horizontalHeader().mapToGlobal(position))
        menu.deleteLater()

    def show_sort(self, column: int, *, descending: bool) -> None:
        """Show the list as sorted by ``column`` without asking for that order (the
        controller reads the rows in it already)."""
        header = self.table.horizontalHeader()
        blocked = header.blockSignals(True)
        order = Qt.SortOrder.DescendingOrder if descending else Qt.SortOrder.AscendingOrder
        header.setSortIndicator(column, order)
        header.blockSignals(blocked)

    def hidden_columns(self) -> list[str]:
        """The keys of the columns chosen to be hidden (by :meth:`column_menu`; not
        those hidden for want of room)."""
        chosen = self.columns.chosen_hidden
        return [key for column, (key, _) in enumerate(COLUMNS) if column in chosen]

    def hide_columns(self, keys: Iterable[str]) -> None:
        """Show every column but those of ``keys`` where there is room (unknown keys are
        ignored; the name is always shown)."""
        hidden = set(keys) - {"name"}
        self.columns.set_chosen_hidden(
            column for column, (key, _title) in enumerate(COLUMNS) if key in hidden
        )

    @contextlib.contextmanager
    def rows_changing(self) -> Iterator[None]:
        """Rows removed meanwhile (deleted, trimmed, no longer among those read) open
        no patient and close none: the chosen row's going is not told as a choice (Qt
        chose a neighbour, and that patient opened; or nothing, and the page closed on
        a patient still listed further down). The controller chooses afterwards."""
        blocker = self.table.selectionModel().blockSignals(True)
        try:
            yield
        finally:
            self.table.selectionModel().blockSignals(blocker)

    def remove_patient(self, patient_id: str) -> bool:
        """Drop the patient's row without letting Qt move the selection to a neighbour
        (which would open another patient); False if it was not loaded."""
        with self.rows_changing():
            return self.model.remove(patient_id)

    def trim(self, keep: int) -> None:
        """Drop the loaded rows past the first ``keep`` (see
        :meth:`PagedRowModel.trim`), the selection left as it is."""
        with self.rows_changing():
            self.model.trim(keep)

    def show_count(self, loaded: int, total: int) -> None:
        """Say how many patients are listed, or, in the table, why it is empty."""
        if total == 0:
            self.count.setText("")
            self.empty_hint.setText(self._empty_text())
            self.empty_hint.setVisible(self.model.rowCount() == 0)
            return
        self.empty_hint.hide()
        if loaded >= total:
            self.count.setText(f"{total:,} patient{'s' if total != 1 else ''}")
        else:
            self.count.setText(f"Showing {loaded:,} of {total:,} patients (scroll for more)")

    def empty_text(self) -> str:
        """What the table says while it is empty ("" while it has rows)."""
        return self.empty_hint.text() if not self.empty_hint.isHidden() else ""

    def _empty_text(self) -> str:
        search = self.search.text().strip()
        status = self.status.currentData()
        if not search and status is None:
            new = QKeySequence(QKeySequence.StandardKey.New).toString(
                QKeySequence.SequenceFormat.NativeText
            )
            return (
                "No patients yet.\n"
                f"Add one with File ▸ New patient… ({new}), or drop scan images onto the window."
            )
        if search and status is not None:
            return (
                f"No patients match “{search}” with status {status}.\nTo see every "
                f"patient, clear the search box and choose “{ALL_STATUSES}”."
            )
        if search:
            return f"No patients match “{search}”.\nClear the search box to see every patient."
        return f"No patients with status {status}.\nChoose “{ALL_STATUSES}” to see every patient."

    @Slot()
    def _on_model_rows_changed(self) -> None:
        if self.model.rowCount() > 0:  # a patient arrived: the list is not empty any more
            self.empty_hint.hide()

    @Slot(int)
    def _on_status_index_changed(self, _index: int) -> None:
        self.status_chosen.emit(self.status.currentData())

    @Slot()
    def _on_open_key_activated(self) -> None:
        index = self.table.currentIndex()
        if index.isValid():
            self.table.selectRow(index.row())

    @Slot(QItemSelection, QItemSelection)
    def _on_selection_changed(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        self.patient_selected.emit(self.selected_patient_id())
