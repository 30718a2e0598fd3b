"""The status bar: model state, API server address, watch-folder state."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Slot
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QMessageBox, QStatusBar, QWidget

from ophthai_desktop.ui.views.reflow import ElidedLabel
from ophthai_desktop.ui.views.style import set_style_property

#: QStatusBar's own message while a status tip is shown in the message label: a text
#: that paints nothing.
TIP_STAND_IN = " "


class AppStatusBar(QStatusBar):
    """Three permanent fields; ``kind`` is ``ok``, ``warn``, ``error`` or empty.

    A field says its state in a few words; the reason (a watch folder's error, which
    names the folder) is in its tooltip, which a screen reader reads as the field's
    description. A click on the watch-folder field, or View ▸ Watch folder status…
    (:meth:`show_watcher_details`), shows the reason in a box of its own: the tooltip
    alone needed the mouse held still over it.

    The fields share the bar's width: where it is too narrow for their whole text, each
    shows its state with "…" for the rest (:class:`ElidedLabel`; the whole text in its
    tooltip), rather than keeping the window wider than a small screen; a message
    (:meth:`show_message`) shares it with them, and so does a control's status tip
    (:meth:`show_tip`) while the pointer is on it.
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("statusBar")
        self.model = ElidedLabel("Model: …")
        self.model.setObjectName("modelState")
        self.api = ElidedLabel("API: …")
        self.api.setObjectName("apiState")
        self.watcher = ElidedLabel("Watch folder: …")
        self.watcher.setObjectName("watcherState")
        self.watcher.setCursor(Qt.CursorShape.PointingHandCursor)
        self.watcher.installEventFilter(self)
        #: What just happened, a moment (:meth:`show_message`).
        self.message = ElidedLabel(keep_head=False)
        self.message.setObjectName("statusMessage")
        self.message.hide()
        self.addWidget(self.message, 2)  # what just happened: twice a field's share
        #: The message's text while its moment lasts, and the status tip shown over it.
        self._said = ""
        self._tip = ""
        self._message_timer = QTimer(self)
        self._message_timer.setSingleShot(True)
        self._message_timer.timeout.connect(self._on_message_timer_timeout)
        # A status tip (a menu item's, a toolbar button's) comes as QStatusBar's own
        # message: QMainWindow calls showMessage, which is not virtual. Heard here and
        # shown in the message label, not painted by QStatusBar (cut without "…", the
        # label hidden meanwhile). A signal, not an event handler on the window: that
        # would run Python at each of the window's layout passes.
        self.messageChanged.connect(self._on_status_bar_message_changed)
        for label in (self.model, self.api, self.watcher):
            self.addPermanentWidget(label, 1)  # room shared, up to its whole text
        #: The watch folder's details, while open.
        self.watcher_details: QMessageBox | None = None

    def set_model(self, text: str, kind: str, tooltip: str) -> None:
        self._set(self.model, text, kind, tooltip)

    def set_api(self, text: str, kind: str, tooltip: str = "") -> None:
        self._set(self.api, text, kind, tooltip)

    def set_watcher(self, text: str, kind: str, tooltip: str = "") -> None:
        self._set(self.watcher, text, kind, tooltip)
        box = self.watcher_details
        if box is not None:  # open: it follows the state (the next retry, the fix)
            box.setText(self.watcher.full_text())
            box.setInformativeText(tooltip)

    def show_message(self, text: str, shown_ms: int) -> None:
        """Say ``text`` for ``shown_ms`` left of the fields, sharing the bar's width with
        them (cut with "…" where it is narrow, whole in its tooltip). QStatusBar's own
        message was painted in the room the fields left, if any, and cut short there."""
        self._said = text
        self._show_message_or_tip()
        self._message_timer.start(shown_ms)

    def show_tip(self, text: str) -> None:
        """Show a status tip (a control's, while the pointer is on it) where the message
        is, as the message is shown; an empty one ends it, and the message (if its
        moment lasts) is shown again. Qt's status tips come here (see ``__init__``)."""
        self._tip = text
        self._show_message_or_tip()

    @Slot(str)
    def _on_status_bar_message_changed(self, text: str) -> None:
        if text == TIP_STAND_IN:
            return
        if text:
            # Kept as QStatusBar's message while the tip shows: it paints nothing, and
            # the empty tip that ends it (the pointer gone) changes it, and is heard.
            self.showMessage(TIP_STAND_IN)
        self.show_tip(text)  # after: QStatusBar hid the label as the tip came

    def _show_message_or_tip(self) -> None:
        text = self._tip or self._said
        self.message.set_full_text(text)
        self.message.setVisible(bool(text))

    @Slot()
    def _on_message_timer_timeout(self) -> None:
        self._said = ""
        self._show_message_or_tip()

    @Slot()
    def show_watcher_details(self) -> None:
        """Show the watch folder's state and its reason (the folder, the error) in a
        box that stays until closed, its text selectable to copy."""
        box = self.watcher_details
        if box is None:
            box = QMessageBox(self.window())
            box.setWindowTitle("Watch folder")
            box.setIcon(QMessageBox.Icon.Information)
            box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
            box.finished.connect(self._on_watcher_details_finished)
            self.watcher_details = box
        box.setText(self.watcher.full_text())
        box.setInformativeText(self.watcher.description())
        box.open()

    @Slot()
    def _on_watcher_details_finished(self) -> None:
        self.watcher_details = None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if (
            watched is self.watcher
            and isinstance(event, QMouseEvent)
            and event.type() == QEvent.Type.MouseButtonRelease
            and event.button() == Qt.MouseButton.LeftButton
            and self.watcher.rect().contains(event.position().toPoint())
        ):
            self.show_watcher_details()
            return True
        return super().eventFilter(watched, event)

    @staticmethod
    def _set(label: ElidedLabel, text: str, kind: str, tooltip: str) -> None:
        label.set_full_text(text)
        label.set_description(tooltip)  # also its accessible description
        set_style_property(label, "kind", kind)
