"""The notifications panel's item model (newest first, precomputed rows)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QModelRoleDataSpan,
    QPersistentModelIndex,
    Qt,
)
from PySide6.QtGui import QColor, QFont, QIcon, QPixmap

from ophthai_desktop.core.records import NotificationRecord
from ophthai_desktop.ui.display import local_datetime

TYPE_COLORS = {"critical": "#c62828", "success": "#2e7d32", "info": "#1976d2"}
PATIENT_ROLE = Qt.ItemDataRole.UserRole + 1

AnyIndex = QModelIndex | QPersistentModelIndex
DISPLAY = int(Qt.ItemDataRole.DisplayRole.value)
DECORATION = int(Qt.ItemDataRole.DecorationRole.value)
FONT = int(Qt.ItemDataRole.FontRole.value)


@dataclass(frozen=True)
class NotificationRow:
    notification_id: int
    patient_id: str | None
    type: str
    read: bool
    text: str


def notification_row(note: NotificationRecord) -> NotificationRow:
    when = local_datetime(note.timestamp)
    return NotificationRow(
        note.id, note.patient_id, note.type, note.read, f"{note.message}\n{when}"
    )


def _dot(color: str) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


class NotificationListModel(QAbstractListModel):
    """Loaded notifications; unread ones are bold."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[NotificationRow] = []
        self._icons = {kind: _dot(color) for kind, color in TYPE_COLORS.items()}
        self._bold = QFont()
        self._bold.setBold(True)

    def rowCount(self, parent: AnyIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def data(self, index: AnyIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return row.text
        if role == Qt.ItemDataRole.DecorationRole:
            return self._icons.get(row.type)
        if role == Qt.ItemDataRole.FontRole:
            return None if row.read else self._bold
        if role == Qt.ItemDataRole.UserRole:
            return row.notification_id
        if role == PATIENT_ROLE:
            return row.patient_id
        return None

    def multiData(self, index: AnyIndex, roleDataSpan: QModelRoleDataSpan) -> None:
        row = self._rows[index.row()]
        for item in roleDataSpan:
            role = item.role()
            if role == DISPLAY:
                item.setData(row.text)
            elif role == DECORATION:
                item.setData(self._icons.get(row.type))
            elif role == FONT and not row.read:
                item.setData(self._bold)
            else:
                item.clearData()

    def reset(self, rows: Sequence[NotificationRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def insert_first(self, row: NotificationRow) -> None:
        if self.position(row.notification_id) is not None:
            self.replace(row)
            return
        self.beginInsertRows(QModelIndex(), 0, 0)
        self._rows.insert(0, row)
        self.endInsertRows()

    def replace(self, row: NotificationRow) -> None:
        position = self.position(row.notification_id)
        if position is not None:
            self._rows[position] = row
            self.dataChanged.emit(self.index(position), self.index(position))

    def remove(self, notification_id: int) -> None:
        position = self.position(notification_id)
        if position is not None:
            self.beginRemoveRows(QModelIndex(), position, position)
            del self._rows[position]
            self.endRemoveRows()

    def mark_all_read(self) -> None:
        self._rows = [replace(row, read=True) for row in self._rows]
        if self._rows:
            self.dataChanged.emit(self.index(0), self.index(len(self._rows) - 1))

    def position(self, notification_id: int) -> int | None:
        for position, row in enumerate(self._rows):
            if row.notification_id == notification_id:
                return position
        return None

    def row_at(self, position: int) -> NotificationRow | None:
        return self._rows[position] if 0 <= position < len(self._rows) else None

    def rows(self) -> tuple[NotificationRow, ...]:
        return tuple(self._rows)
