"""The system-tray icon: Show, Pause watch folder, Quit, and messages (critical findings,
watch-folder files not taken in)."""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from ophthai_desktop.ui.resources import icon
from ophthai_desktop.ui.views.toast import AlertKind

MESSAGE_ICONS: dict[str, QSystemTrayIcon.MessageIcon] = {
    "info": QSystemTrayIcon.MessageIcon.Information,
    "warning": QSystemTrayIcon.MessageIcon.Warning,
    "critical": QSystemTrayIcon.MessageIcon.Critical,
}


class TrayIcon(QObject):
    """Wraps :class:`QSystemTrayIcon`; only made where a tray exists.

    Signals:
        show_requested(): "Show" or a click on the icon.
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

    def show(self) -> None:
        self.icon.show()

    def hide(self) -> None:
        self.icon.hide()

    def notify(self, title: str, text: str, *, kind: AlertKind = "info") -> None:
        """A message from the tray icon, with the icon of its kind."""
        self.icon.showMessage(title, text, MESSAGE_ICONS[kind], 10_000)

    def _on_icon_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.show_requested.emit()
