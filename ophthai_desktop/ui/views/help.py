"""The Help menu's reading dialogs (Getting started, Keyboard shortcuts): rich text in a
read-only browser, sized to the font so a large one stays readable. Layout only;
:mod:`ophthai_desktop.ui.controllers.help` opens them."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

#: The size the dialog opens at, in average characters and lines of its font.
WIDTH_CHARS = 90
HEIGHT_LINES = 44
#: At most this share of the screen's free room (a large font on a small screen).
SCREEN_SHARE = 0.9


class HelpDialog(QDialog):
    """Text to read beside the window: not modal, closed by Escape or Close, deleted
    once closed (a day's dialogs must not stay hidden children of the window)."""

    def __init__(self, title: str, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("helpDialog")
        self.setWindowTitle(title)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.text = QTextBrowser()
        self.text.setObjectName("helpText")
        self.text.setOpenLinks(False)  # no links: the workstation may be offline
        self.text.setHtml(text)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        self._fit_size()
        # The keyboard on the text: arrows and Page Up/Down scroll it, Escape closes.
        self.text.setFocus(Qt.FocusReason.OtherFocusReason)

    def _fit_size(self) -> None:
        metrics = self.fontMetrics()
        width = metrics.averageCharWidth() * WIDTH_CHARS
        height = metrics.lineSpacing() * HEIGHT_LINES
        screen = (self.parentWidget() or self).screen() or QGuiApplication.primaryScreen()
        if screen is not None:
            room = screen.availableGeometry()
            width = min(width, int(room.width() * SCREEN_SHARE))
            height = min(height, int(room.height() * SCREEN_SHARE))
        self.resize(width, height)
