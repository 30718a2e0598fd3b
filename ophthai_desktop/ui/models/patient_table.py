"""The patient list's item model.

Rows are tuples of display strings computed off the GUI thread when a page arrives
(:func:`patient_row`), so ``data()`` is an index lookup. ``multiData()`` answers all the
roles a delegate asks for in one call: a repaint of the visible rows is then one Python
call per cell instead of seven, and every Python call from Qt's painting has to take
the interpreter lock, which the worker and the API server contend for. Pages of 200 are
fetched as the view scrolls (``canFetchMore``/``fetchMore``), in the background, by the
controller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QModelRoleDataSpan,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QColor, QIcon, QPixmap

from ophthai_desktop.core.domain import PatientStatus
from ophthai_desktop.core.records import PatientRecord
from ophthai_desktop.ui.display import local_date, local_datetime, step_name

#: (order_by key of PatientService.list_patients, header)
COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "Name"),
    ("id", "ID"),
    ("age", "Age"),
    ("gender", "Sex"),
    ("status", "Status"),
    ("workflow_step", "Step"),
    ("admission_date", "Admitted"),
    ("appointment_date", "Appointment"),
)
STATUS_COLUMN = 4
#: The list's order when no column is chosen: newest patients first.
DEFAULT_ORDER = "created_at"

STATUS_COLORS = {
    PatientStatus.CRITICAL.value: "#c62828",
    PatientStatus.STABLE.value: "#2e7d32",
    PatientStatus.PENDING_ANALYSIS.value: "#ef8f00",
    PatientStatus.DISCHARGED.value: "#78909c",
}

AnyIndex = QModelIndex | QPersistentModelIndex
DISPLAY = int(Qt.ItemDataRole.DisplayRole.value)
DECORATION = int(Qt.ItemDataRole.DecorationRole.value)
USER = int(Qt.ItemDataRole.UserRole.value)


@dataclass(frozen=True)
class PatientRow:
    """One patient as the list shows it (built on a pool thread)."""

    patient_id: str
    status: str
    cells: tuple[str, ...]
    name_key: str  # lower-case name, for matching a search locally


def patient_row(patient: PatientRecord) -> PatientRow:
    cells = (
        patient.name,
        patient.id,
        "" if patient.age is None else str(patient.age),
        patient.gender or "",
        patient.status,
        f"{patient.workflow_step} · {step_name(patient.workflow_step)}",
        local_date(patient.admission_date),
        local_datetime(patient.appointment_date),
    )
    return PatientRow(patient.id, patient.status, cells, patient.name.lower())


def _dot(color: str) -> QIcon:
    pixmap = QPixmap(10, 10)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


class PatientTableModel(QAbstractTableModel):
    """Loaded patient rows, plus how many match in all.

    Signals:
        more_requested(int skip): the view wants the next page, starting at ``skip``.
        sort_requested(str order_by, bool descending): a column header was clicked.
    """

    more_requested = Signal(int)
    sort_requested = Signal(str, bool)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[PatientRow] = []
        self._index: dict[str, int] = {}
        self._total = 0
        self._fetching = False
        self._icons = {status: _dot(color) for status, color in STATUS_COLORS.items()}
        self._headers = tuple(title for _, title in COLUMNS)

    # Qt's model interface (kept trivial) ----------------------------------------------

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return self._rows[index.row()].cells[index.column()]
        if role == Qt.ItemDataRole.DecorationRole and index.column() == STATUS_COLUMN:
            return self._icons.get(self._rows[index.row()].status)
        if role == Qt.ItemDataRole.UserRole:
            return self._rows[index.row()].patient_id
        return None

    def multiData(self, index: AnyIndex, roleDataSpan: QModelRoleDataSpan) -> None:
        row = self._rows[index.row()]
        column = index.column()
        for item in roleDataSpan:
            role = item.role()
            if role == DISPLAY:
                item.setData(row.cells[column])
            elif role == DECORATION and column == STATUS_COLUMN:
                item.setData(self._icons.get(row.status))
            elif role == USER:
                item.setData(row.patient_id)
            else:
                item.clearData()

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self._headers[section]
        return None

    def canFetchMore(self, parent: AnyIndex = QModelIndex()) -> bool:
        return not parent.isValid() and not self._fetching and len(self._rows) < self._total

    def fetchMore(self, parent: AnyIndex = QModelIndex()) -> None:
        if self.canFetchMore(parent):
            self._fetching = True
            self.more_requested.emit(len(self._rows))

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if 0 <= column < len(COLUMNS):
            key = COLUMNS[column][0]
            self.sort_requested.emit(key, order == Qt.SortOrder.DescendingOrder)
        else:
            self.sort_requested.emit(DEFAULT_ORDER, True)

    # What the controller changes ------------------------------------------------------

    @property
    def total(self) -> int:
        """How many patients match the query (loaded or not)."""
        return self._total

    @property
    def loaded(self) -> int:
        return len(self._rows)

    def reset(self, rows: Sequence[PatientRow], total: int) -> None:
        """Replace everything with the first page of a new query."""
        self.beginResetModel()
        self._rows = list(rows)
        self._index = {row.patient_id: i for i, row in enumerate(self._rows)}
        self._total = total
        self._fetching = False
        self.endResetModel()

    def append(self, rows: Sequence[PatientRow], total: int) -> None:
        """Add the next page (rows already shown are skipped)."""
        fresh = [row for row in rows if row.patient_id not in self._index]
        self._fetching = False
        self._total = max(total, len(self._rows) + len(fresh))
        if not fresh:
            return
        first = len(self._rows)
        self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
        for offset, row in enumerate(fresh):
            self._index[row.patient_id] = first + offset
        self._rows.extend(fresh)
        self.endInsertRows()

    def fetch_failed(self) -> None:
        """The page did not arrive; a later scroll asks again."""
        self._fetching = False

    def insert_first(self, row: PatientRow) -> None:
        """A new patient at the top (newest-first order)."""
        if row.patient_id in self._index:
            self.replace(row)
            return
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._rows.insert(0, row)
        self._reindex()
        self._total += 1
        self.endInsertRows()

    def replace(self, row: PatientRow) -> bool:
        """Show the patient's new values; False if the patient is not loaded."""
        position = self._index.get(row.patient_id)
        if position is None:
            return False
        self._rows[position] = row
        self.dataChanged.emit(self.index(position, 0), self.index(position, len(COLUMNS) - 1))
        return True

    def remove(self, patient_id: str) -> bool:
        position = self._index.get(patient_id)
        if position is None:
            return False
        self.beginRemoveRows(QModelIndex(), position, position)
        del self._rows[position]
        self._reindex()
        self._total = max(0, self._total - 1)
        self.endRemoveRows()
        return True

    def row_of(self, patient_id: str) -> int | None:
        return self._index.get(patient_id)

    def patient_id_at(self, row: int) -> str | None:
        return self._rows[row].patient_id if 0 <= row < len(self._rows) else None

    def _reindex(self) -> None:
        self._index = {row.patient_id: i for i, row in enumerate(self._rows)}
