"""The notifications panel: newest first, unread in bold, with an unread badge."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QItemSelection, QModelIndex, Qt, Signal, Slot
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QListView,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.ui.models.notification_list import PATIENT_ROLE, NotificationListModel
from ophthai_desktop.ui.resources import icon
from ophthai_desktop.ui.views.empty import EmptyOr
from ophthai_desktop.ui.views.selection import (
    choose_nothing_when_the_chosen_row_goes,
    choose_the_row_the_keyboard_is_on,
)

#: What Enter does in the list, as Help's list of keys says.
OPEN_KEY_DOES = "Open the chosen notification's patient"


class _NotificationList(QListView):
    """The list, whose rows (two lines each, of a size the model sets) follow its font,
    also one changed with the window open; at the change, not at each paint."""

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        model = self.model()
        if event.type() == QEvent.Type.FontChange and isinstance(model, NotificationListModel):
            model.follow_font(self.font())


class NotificationsPanel(QWidget):
    """List and manage notifications.

    Signals:
        notification_opened(int notification_id, object patient_id): clicked, or
            Enter on the chosen one.
        mark_read_requested(int notification_id)
        mark_all_read_requested()
        delete_requested(int notification_id)
    """

    notification_opened = Signal(int, object)
    mark_read_requested = Signal(int)
    mark_all_read_requested = Signal()
    delete_requested = Signal(int)

    def __init__(self, model: NotificationListModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("notificationsPanel")
        self.model = model
        self.unread_title = QLabel("Unread:")
        self.unread = QLabel("")
        self.unread.setObjectName("badge")
        self.unread.hide()
        self.mark_read = self._button("mark-read", "Mark read", "Mark the selected one read")
        self.mark_all = self._button("mark-read", "All read", "Mark every notification read")
        self.delete = self._button("delete", "Delete", "Delete the selected notification")
        bar = QHBoxLayout()
        bar.setContentsMargins(0, 0, 0, 0)
        bar.addWidget(self.unread_title)
        bar.addWidget(self.unread)
        bar.addStretch(1)
        bar.addWidget(self.mark_read)
        bar.addWidget(self.mark_all)
        bar.addWidget(self.delete)
        self.list = _NotificationList()
        self.list.setObjectName("notificationList")
        self.list.setAccessibleName("Notifications")
        choose_nothing_when_the_chosen_row_goes(self.list, model)  # before setModel
        self.list.setModel(model)
        self.list.setUniformItemSizes(True)
        self.list.setWordWrap(False)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.list.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.list.setAcceptDrops(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(bar)
        self.body = EmptyOr(self.list, "No notifications.")
        layout.addWidget(self.body, 1)
        self.set_unread(0)

        self._refresh_buttons()
        self.list.selectionModel().selectionChanged.connect(self._on_selection_changed)
        model.modelReset.connect(self._refresh_buttons)  # a reset clears it silently
        model.dataChanged.connect(self._refresh_buttons)  # the chosen one was read
        self.list.clicked.connect(self._on_list_clicked)
        # Tab or F6 put the keyboard on the first row without choosing it: Enter, Mark
        # read and Delete act on the chosen one, shown highlighted, not on a focus frame.
        choose_the_row_the_keyboard_is_on(self.list)
        for keys, slot, what in (
            (QKeySequence(Qt.Key.Key_Return), self._on_open_key, OPEN_KEY_DOES),
            (QKeySequence(Qt.Key.Key_Enter), self._on_open_key, OPEN_KEY_DOES),
            (
                QKeySequence(QKeySequence.StandardKey.Delete),
                self._on_delete_clicked,
                "Delete the chosen notification",
            ),
        ):
            shortcut = QShortcut(keys, self.list)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
            shortcut.setWhatsThis(what)  # Help's list of keys
            shortcut.activated.connect(slot)
        self.mark_read.clicked.connect(self._on_mark_read_clicked)
        self.mark_all.clicked.connect(self.mark_all_read_requested)
        self.delete.clicked.connect(self._on_delete_clicked)

    def set_unread(self, count: int) -> None:
        self.unread.setText(str(count))
        self.unread.setAccessibleName(f"{count} unread")
        self.unread.setVisible(count > 0)
        self.unread_title.setText("Unread:" if count else "All read")
        self.mark_all.setEnabled(count > 0)

    @Slot()
    def _refresh_buttons(self) -> None:
        """Mark read and Delete act on the chosen notification: only with one chosen,
        and Mark read only while it is unread."""
        index = self._chosen()
        row = self.model.row_at(index.row()) if index.isValid() else None
        self.mark_read.setEnabled(row is not None and not row.read)
        self.delete.setEnabled(row is not None)

    def end_in_view(self) -> bool:
        """Whether the list shows its last row (or has none), where it asks for the next
        page; Qt asks again for one that failed only as the list scrolls."""
        if not self.list.isVisible():
            return False  # asked for as it is shown
        last = self.model.rowCount() - 1
        if last < 0:
            return True
        shown = self.list.viewport().rect()
        return shown.intersects(self.list.visualRect(self.model.index(last, 0)))

    def selected_id(self) -> int | None:
        index = self._chosen()
        return int(index.data(Qt.ItemDataRole.UserRole)) if index.isValid() else None

    def _chosen(self) -> QModelIndex:
        """The chosen (selected, highlighted) row, or an invalid index: not merely the
        row the keyboard is on (Ctrl+Space unchooses it and leaves the focus frame)."""
        rows = self.list.selectionModel().selectedIndexes()
        return rows[0] if rows else QModelIndex()

    def _button(self, icon_name: str, text: str, tip: str) -> QToolButton:
        button = QToolButton()
        button.setIcon(icon(icon_name))
        button.setText(text)
        button.setToolTip(tip)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        button.setAutoRaise(True)
        return button

    @Slot(QModelIndex)
    def _on_list_clicked(self, index: QModelIndex) -> None:
        self.notification_opened.emit(
            int(index.data(Qt.ItemDataRole.UserRole)), index.data(PATIENT_ROLE)
        )

    @Slot(QItemSelection, QItemSelection)
    def _on_selection_changed(self, _selected: QItemSelection, _deselected: QItemSelection) -> None:
        self._refresh_buttons()

    @Slot()
    def _on_open_key(self) -> None:
        index = self._chosen()
        if index.isValid():
            self._on_list_clicked(index)

    @Slot()
    def _on_mark_read_clicked(self) -> None:
        selected = self.selected_id()
        if selected is not None:
            self.mark_read_requested.emit(selected)

    @Slot()
    def _on_delete_clicked(self) -> None:
        selected = self.selected_id()
        if selected is not None:
            self.delete_requested.emit(selected)
