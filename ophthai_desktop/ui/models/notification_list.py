"""The notifications panel's item model (newest first; held in Qt's own item model,
:mod:`.rows`, so that painting the panel runs no Python)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, QTimer, Slot
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetrics,
    QIcon,
    QPainter,
    QPixmap,
    QPolygonF,
    QStandardItem,
)

from ophthai_desktop.core.paging import After
from ophthai_desktop.core.records import NotificationRecord
from ophthai_desktop.core.services.notifications import notification_after
from ophthai_desktop.ui.display import local_datetime
from ophthai_desktop.ui.models.rows import PagedRowModel

#: The kinds shown: the stored types, and "warning" for the app's warnings (an analysis
#: that failed, an answer that could not be read, a file the watch folder did not take
#: in; stored as info: see ``NotificationRecord.warning``).
TYPE_COLORS = {
    "critical": "#c62828",
    "warning": "#b45309",
    "success": "#2e7d32",
    "info": "#1976d2",
}
#: Each kind says what it is in words (before the time) and by its icon's shape and
#: sign, not by its colour alone: a red and a blue square looked alike to many.
TYPE_WORDS = {"critical": "Critical", "warning": "Warning", "success": "Done", "info": "Info"}
TYPE_SIGNS = {"critical": "!", "warning": "!", "success": "✓", "info": "i"}
ICON_PX = 16
PATIENT_ROLE = Qt.ItemDataRole.UserRole + 1
#: Rows :meth:`NotificationListModel.mark_all_read` marks an event-loop turn (about
#: 3 ms): all 10,000 loaded ones at once held the GUI thread for 67 ms, and 300 a turn
#: for 26-41 ms (``bench/notifications_panel.py``).
MARK_READ_PER_TURN = 100


@dataclass(frozen=True)
class NotificationRow:
    notification_id: int
    patient_id: str | None
    type: str  # the kind shown (see TYPE_COLORS)
    read: bool
    text: str
    #: Where the page after this row starts (the list reads older pages after its last).
    after: After


def notification_row(note: NotificationRecord) -> NotificationRow:
    when = local_datetime(note.timestamp)
    kind = "warning" if note.warning else note.type
    word = TYPE_WORDS.get(kind, kind.capitalize())
    return NotificationRow(
        note.id,
        note.patient_id,
        kind,
        note.read,
        f"{note.message}\n{word} · {when}",
        notification_after(note),
    )


def _badge(kind: str) -> QIcon:
    """The kind's icon, drawn once: a red triangle with "!" (critical), an amber disc
    with "!" (warning), a green disc with a tick (success), a blue disc with "i"
    (info)."""
    pixmap = QPixmap(ICON_PX, ICON_PX)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QColor(TYPE_COLORS[kind]))
    box = QRectF(0, 0, ICON_PX, ICON_PX)
    if kind == "critical":
        painter.drawPolygon(
            QPolygonF([QPointF(ICON_PX / 2, 0), QPointF(ICON_PX, ICON_PX), QPointF(0, ICON_PX)])
        )
        box.setTop(ICON_PX * 0.3)
    else:
        painter.drawEllipse(box)
    font = QFont()
    font.setBold(True)
    font.setPixelSize(round(ICON_PX * 0.7))
    painter.setFont(font)
    painter.setPen(QColor("#ffffff"))
    painter.drawText(box, Qt.AlignmentFlag.AlignCenter, TYPE_SIGNS[kind])
    painter.end()
    return QIcon(pixmap)


class NotificationListModel(PagedRowModel):
    """Loaded notifications (the newest pages; older ones as the list scrolls); unread
    ones are bold."""

    def __init__(self, parent: Any = None) -> None:
        super().__init__([""], parent)
        self._icons = {kind: _badge(kind) for kind in TYPE_COLORS}
        self._bold = QFont()
        self._bold.setBold(True)
        # A row asks for no width: the list then makes it as wide as itself and cuts
        # the message short with an ellipsis (whole in the tooltip). Asked for the
        # message's width, it scrolled sideways (at 1024 px wide, by 350 px). The height
        # is the two lines', as the list would have given (the message, the time).
        self._size = QSize(1, 2 * QFontMetrics(self._bold).lineSpacing() + 2)
        # The rows that were unread when every notification was marked read, still to
        # be shown read (a page a turn; see mark_all_read).
        self._to_mark: dict[int, None] = {}
        self._mark_timer = QTimer(self)
        self._mark_timer.setSingleShot(True)
        self._mark_timer.setInterval(0)
        self._mark_timer.timeout.connect(self._on_mark_timer_timeout)

    def follow_font(self, font: QFont) -> None:
        """Rows two lines of ``font`` high, the list's font now: set once at start-up,
        after the desktop's font grew with the window open the rows kept their height
        and cut the time under the message."""
        bold = QFont(font)
        bold.setBold(True)
        size = QSize(1, 2 * QFontMetrics(bold).lineSpacing() + 2)
        if size == self._size:
            return
        self._size = size
        for position in range(self.rowCount()):
            item = self.item(position, 0)
            if item is not None:
                item.setSizeHint(size)

    def key(self, row: NotificationRow) -> int:
        return row.notification_id

    def cells(self, row: NotificationRow) -> tuple[str]:
        return (row.text,)

    def style(
        self, items: Sequence[QStandardItem], row: NotificationRow, old: NotificationRow | None
    ) -> None:
        item = items[0]
        if old is None:
            item.setSizeHint(self._size)
            item.setIcon(self._icons.get(row.type, QIcon()))
            item.setData(row.patient_id, PATIENT_ROLE)
        if old is None or old.read != row.read:
            item.setData(None if row.read else self._bold, Qt.ItemDataRole.FontRole)

    def replace(self, row: NotificationRow) -> None:
        # Newer than the marking of all as read (marked unread again since): it stays.
        self._to_mark.pop(row.notification_id, None)
        self.update_row(row)

    def insert_first(self, rows: Sequence[NotificationRow]) -> None:
        # Told of after the marking of all as read (a row read before it, listed by
        # then): as told.
        for row in rows:
            self._to_mark.pop(row.notification_id, None)
        super().insert_first(rows)

    def reset(self, rows: Sequence[NotificationRow], total: int) -> None:
        self._to_mark.clear()  # the rows read replace those that were to be marked
        super().reset(rows, total)

    def mark_all_read(self) -> None:
        """Show every row unread now as read: :data:`MARK_READ_PER_TURN` of them at
        once, the rest in the next event-loop turns. A row marked unread again, or a new
        one, meanwhile stays unread."""
        unread = (row.notification_id for row in self._records.values() if not row.read)
        self._to_mark.update(dict.fromkeys(unread))
        self._on_mark_timer_timeout()

    @property
    def marking_read(self) -> bool:
        """Whether rows are still to be shown read after :meth:`mark_all_read`."""
        return bool(self._to_mark)

    @Slot()
    def _on_mark_timer_timeout(self) -> None:
        keys = list(islice(self._to_mark, MARK_READ_PER_TURN))
        rows = []
        for key in keys:
            del self._to_mark[key]
            row = self.get(key)
            if row is not None and not row.read:  # not deleted meanwhile
                rows.append(replace(row, read=True))
        self.update_rows(rows)  # one change for the views, not one per row
        if self._to_mark:
            self._mark_timer.start()
