"""Help ▸ Getting started and Help ▸ Keyboard shortcuts: one dialog of each at a time
(opening it again brings the open one to the front), deleted once closed."""

from __future__ import annotations

from PySide6.QtCore import QObject, Slot

from ophthai_desktop.ui.views import getting_started
from ophthai_desktop.ui.views.help import HelpDialog
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.shortcuts import plain, shortcuts_html, window_shortcuts


class HelpController(QObject):
    """Opens the Help menu's reading dialogs over ``window``."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window
        self.shortcuts_dialog: HelpDialog | None = None
        self.getting_started_dialog: HelpDialog | None = None
        window.shortcuts_action.triggered.connect(self.open_shortcuts)
        window.getting_started_action.triggered.connect(self.open_getting_started)

    @Slot()
    def open_shortcuts(self) -> HelpDialog:
        """The window's keys as they are now, read from its actions and shortcuts."""
        if self.shortcuts_dialog is None:
            text = shortcuts_html(
                window_shortcuts(self._window),
                how_to_reach_a_part=f"View ▸ {plain(self._window.next_area_action.text())}",
            )
            self.shortcuts_dialog = self._dialog("Keyboard shortcuts", text)
            self.shortcuts_dialog.finished.connect(self._on_shortcuts_dialog_finished)
        return self._show(self.shortcuts_dialog)

    @Slot()
    def open_getting_started(self) -> HelpDialog:
        if self.getting_started_dialog is None:
            dialog = self._dialog(getting_started.TITLE, getting_started.rich_text())
            dialog.finished.connect(self._on_getting_started_dialog_finished)
            self.getting_started_dialog = dialog
        return self._show(self.getting_started_dialog)

    def _dialog(self, title: str, text: str) -> HelpDialog:
        return HelpDialog(title, text, self._window)

    @staticmethod
    def _show(dialog: HelpDialog) -> HelpDialog:
        dialog.show()
        dialog.raise_()
        dialog.activateWindow()
        return dialog

    @Slot()
    def _on_shortcuts_dialog_finished(self) -> None:
        self.shortcuts_dialog = None

    @Slot()
    def _on_getting_started_dialog_finished(self) -> None:
        self.getting_started_dialog = None
