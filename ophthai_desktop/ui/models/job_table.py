"""The job queue's item model: queued, running and finished analyses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QModelRoleDataSpan,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor

from ophthai_desktop.core.records import JobRecord
from ophthai_desktop.ui.display import local_datetime

HEADERS = ("Job", "Patient", "State", "Progress", "Queued", "Note")
STATE_COLORS = {
    "queued": QColor("#5b6b75"),
    "running": QColor("#0f6e8c"),
    "done": QColor("#2e7d32"),
    "failed": QColor("#c62828"),
    "cancelled": QColor("#757575"),
}
OPEN_STATES = ("queued", "running")

AnyIndex = QModelIndex | QPersistentModelIndex
DISPLAY = int(Qt.ItemDataRole.DisplayRole.value)
FOREGROUND = int(Qt.ItemDataRole.ForegroundRole.value)
USER = int(Qt.ItemDataRole.UserRole.value)
STATE_COLUMN = 2


@dataclass(frozen=True)
class JobRow:
    job_id: int
    patient_id: str | None
    state: str
    tokens: int
    queued_at: str
    note: str

    @property
    def cells(self) -> tuple[str, ...]:
        if self.state == "running":
            progress = _tokens(self.tokens) if self.tokens else "starting…"
        elif self.state == "done":
            progress = f"done · {_tokens(self.tokens)}" if self.tokens else "done"
        else:
            progress = ""
        return (
            f"#{self.job_id}",
            self.patient_id or "(no patient)",
            self.state,
            progress,
            self.queued_at,
            self.note,
        )


def job_row(job: JobRecord, tokens: int = 0) -> JobRow:
    return JobRow(
        job.id, job.patient_id, job.state, tokens, local_datetime(job.created_at), job.error or ""
    )


def new_job_row(job_id: int, patient_id: str | None) -> JobRow:
    """A row for a job we only know from its :class:`AnalysisQueued` event."""
    return JobRow(job_id, patient_id, "queued", 0, local_datetime(datetime.now().astimezone()), "")


class JobTableModel(QAbstractTableModel):
    """Jobs, newest first. ``data()`` reads precomputed cells."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[JobRow] = []
        self._cells: list[tuple[str, ...]] = []

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(HEADERS)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole:
            return self._cells[index.row()][index.column()]
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == STATE_COLUMN:
            return STATE_COLORS.get(self._rows[index.row()].state)
        if role == Qt.ItemDataRole.UserRole:
            return self._rows[index.row()].job_id
        return None

    def multiData(self, index: AnyIndex, roleDataSpan: QModelRoleDataSpan) -> None:
        position, column = index.row(), index.column()
        for item in roleDataSpan:
            role = item.role()
            if role == DISPLAY:
                item.setData(self._cells[position][column])
            elif role == FOREGROUND and column == STATE_COLUMN:
                item.setData(STATE_COLORS.get(self._rows[position].state))
            elif role == USER:
                item.setData(self._rows[position].job_id)
            else:
                item.clearData()

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return HEADERS[section]
        return None

    def reset(self, rows: Sequence[JobRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self._cells = [row.cells for row in self._rows]
        self.endResetModel()

    def upsert(self, row: JobRow) -> None:
        """Show ``row``: replace the job's row, or add it at the top."""
        position = self.position(row.job_id)
        if position is None:
            self.beginInsertRows(QModelIndex(), 0, 0)
            self._rows.insert(0, row)
            self._cells.insert(0, row.cells)
            self.endInsertRows()
            return
        self._rows[position] = row
        self._cells[position] = row.cells
        self.dataChanged.emit(self.index(position, 0), self.index(position, len(HEADERS) - 1))

    def update(self, job_id: int, **changes: Any) -> JobRow | None:
        """Change some of a job's values; None if the job is not listed."""
        position = self.position(job_id)
        if position is None:
            return None
        row = replace(self._rows[position], **changes)
        self.upsert(row)
        return row

    def add_tokens(self, job_id: int, count: int) -> None:
        row = self.get(job_id)
        if row is not None:
            self.update(job_id, tokens=row.tokens + count, state="running")

    def position(self, job_id: int) -> int | None:
        for position, row in enumerate(self._rows):
            if row.job_id == job_id:
                return position
        return None

    def get(self, job_id: int) -> JobRow | None:
        position = self.position(job_id)
        return None if position is None else self._rows[position]

    def row_at(self, position: int) -> JobRow | None:
        return self._rows[position] if 0 <= position < len(self._rows) else None

    def open_job_ids(self) -> list[int]:
        return [row.job_id for row in self._rows if row.state in OPEN_STATES]


def _tokens(count: int) -> str:
    return f"{count} token" if count == 1 else f"{count} tokens"
