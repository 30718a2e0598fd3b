"""The system-tray icon: Show, Pause watch folder, Quit, and messages (critical findings,
watch-folder files not taken in, and scans taken in)."""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from ophthai_desktop.ui.resources import icon
from ophthai_desktop.ui.views.toast import URGENCY, AlertKind

MESSAGE_ICONS: dict[str, QSystemTrayIcon.MessageIcon] = {
    "info": QSystemTrayIcon.MessageIcon.Information,
    "warning": QSystemTrayIcon.MessageIcon.Warning,
    "critical": QSystemTrayIcon.MessageIcon.Critical,
}
#: How long a tray message shows.
MESSAGE_MS = 10_000


class TrayIcon(QObject):
    """Wraps :class:`QSystemTrayIcon`; only made where a tray exists.

    Signals:
        show_requested(): "Show", or a click on the icon or on its message.
        pause_toggled(bool paused): "Pause watch folder".
        quit_requested(): "Quit".
    """

    show_requested = Signal()
    pause_toggled = Signal(bool)
    quit_requested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.menu = QMenu()
        self.show_action = QAction("Show OphthAI", self.menu)
        self.pause_action = QAction("Pause watch folder", self.menu)
        self.pause_action.setCheckable(True)
        self.pause_action.setEnabled(False)
        self.pause_action.setToolTip("The watch folder is not available")
        self.quit_action = QAction("Quit", self.menu)
        self.menu.addAction(self.show_action)
        self.menu.addAction(self.pause_action)
        self.menu.addSeparator()
        self.menu.addAction(self.quit_action)
        self.icon = QSystemTrayIcon(icon("app"), self)
        self.icon.setToolTip("OphthAI Desktop")
        self.icon.setContextMenu(self.menu)
        self.show_action.triggered.connect(self.show_requested)
        self.pause_action.toggled.connect(self.pause_toggled)
        self.quit_action.triggered.connect(self.quit_requested)
        self.icon.activated.connect(self._on_icon_activated)
        self.icon.messageClicked.connect(self._on_icon_message_clicked)
        #: The message showing (its kind) until the timer ends, and a less urgent one
        #: that came meanwhile, shown then.
        self._kind: AlertKind = "info"
        self._showing = QTimer(self)
        self._showing.setSingleShot(True)
        self._showing.timeout.connect(self._on_showing_timeout)
        self._waiting: tuple[str, str, AlertKind] | None = None

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def notify(self, title: str, text: str, *, kind: AlertKind = "info") -> None:
        """A message from the tray icon, with the icon of its kind. One less urgent than
        the message showing waits until that one's time is up, as in the toast: Qt's
        balloon (and Windows') shows one message, and a watch folder's "a new scan" a
        moment after a critical finding replaced it."""
        icon = MESSAGE_ICONS[kind]
        if self._showing.isActive() and URGENCY[kind] < URGENCY[self._kind]:
            self._waiting = (title, text, kind)
            return
        self._kind = kind
        self.icon.showMessage(title, text, icon, MESSAGE_MS)
        self._showing.start(MESSAGE_MS)

    @Slot()
    def _on_showing_timeout(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None:
            title, text, kind = waiting
            self.notify(title, text, kind=kind)

    @Slot()
    def _on_icon_message_clicked(self) -> None:
        """The message was clicked: the window shows (it stayed hidden in the tray, the
        notification the message spoke of out of reach), and one waiting shows now."""
        self._showing.stop()
        self._on_showing_timeout()
        self.show_requested.emit()

    def _on_icon_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.show_requested.emit()
