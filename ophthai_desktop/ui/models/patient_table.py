"""The patient list's item model.

Rows arrive as tuples of display strings computed off the GUI thread when a page is
fetched (:func:`patient_row`) and are held in Qt's own item model (:mod:`.rows`), so
painting the list runs no Python. Pages of 200 are fetched as the view scrolls
(``canFetchMore``/``fetchMore``), in the background, by the controller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap, QStandardItem

from ophthai_desktop.core.domain import PatientStatus
from ophthai_desktop.core.records import PatientRecord
from ophthai_desktop.ui.display import (
    NOT_RECORDED,
    NOT_SCHEDULED,
    local_date,
    local_datetime,
    step_name,
)
from ophthai_desktop.ui.models.rows import PagedRowModel

#: (order_by key of PatientService.list_patients, header). The status comes next to the
#: name, so that a critical patient shows where the list is narrow (1024 px wide).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "Name"),
    ("status", "Status"),
    ("age", "Age"),
    ("gender", "Sex"),
    ("id", "ID"),
    ("workflow_step", "Step"),
    ("admission_date", "Admitted"),
    ("appointment_date", "Appointment"),
)
#: Column number of each order_by key.
COLUMN_OF = {key: number for number, (key, _title) in enumerate(COLUMNS)}
STATUS_COLUMN = COLUMN_OF["status"]
#: The list's order when no column is chosen: newest patients first.
DEFAULT_ORDER = "created_at"

STATUS_COLORS = {
    PatientStatus.CRITICAL.value: "#c62828",
    PatientStatus.STABLE.value: "#2e7d32",
    PatientStatus.PENDING_ANALYSIS.value: "#ef8f00",
    PatientStatus.DISCHARGED.value: "#78909c",
}


@dataclass(frozen=True)
class PatientRow:
    """One patient as the list shows it (built on a pool thread)."""

    patient_id: str
    status: str
    cells: tuple[str, ...]
    #: The patient as read: the list reads its next page after its last row's values.
    record: PatientRecord


def patient_row(patient: PatientRecord) -> PatientRow:
    """The patient's cells; a value not recorded reads as on the patient page (a blank
    cell read as not loaded yet, or as a value left out)."""
    text = {
        "name": patient.name,
        "id": patient.id,
        "age": NOT_RECORDED if (age := patient.age_now()) is None else str(age),
        "gender": patient.gender or NOT_RECORDED,
        "status": patient.status,
        "workflow_step": f"{patient.workflow_step} · {step_name(patient.workflow_step)}",
        "admission_date": local_date(patient.admission_date),
        "appointment_date": local_datetime(patient.appointment_date) or NOT_SCHEDULED,
    }
    return PatientRow(
        patient.id, patient.status, tuple(text[key] for key, _title in COLUMNS), patient
    )


def _dot(color: str) -> QIcon:
    pixmap = QPixmap(10, 10)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


class PatientTableModel(PagedRowModel):
    """Loaded patient rows, plus how many match in all.

    Signals:
        sort_requested(str order_by, bool descending): a column header was clicked.
    """

    sort_requested = Signal(str, bool)

    def __init__(self, parent: Any = None) -> None:
        super().__init__([title for _, title in COLUMNS], parent)
        self._icons = {status: _dot(color) for status, color in STATUS_COLORS.items()}

    def key(self, row: PatientRow) -> str:
        return row.patient_id

    def cells(self, row: PatientRow) -> tuple[str, ...]:
        return row.cells

    def style(
        self, items: Sequence[QStandardItem], row: PatientRow, old: PatientRow | None
    ) -> None:
        if old is None or old.status != row.status:
            items[STATUS_COLUMN].setIcon(self._icons.get(row.status, QIcon()))

    # Qt's model interface (the view asks for pages and orders) ------------------------

    def sort(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        if 0 <= column < len(COLUMNS):
            key = COLUMNS[column][0]
            self.sort_requested.emit(key, order == Qt.SortOrder.DescendingOrder)
        else:
            self.sort_requested.emit(DEFAULT_ORDER, True)

    # What the controller changes ------------------------------------------------------

    def replace(self, row: PatientRow) -> bool:
        """Show the patient's new values; False if the patient is not loaded."""
        return self.update_row(row)

    def row_of(self, patient_id: str) -> int | None:
        return self.position(patient_id)

    def patient_id_at(self, row: int) -> str | None:
        record = self.row_at(row)
        return None if record is None else record.patient_id
