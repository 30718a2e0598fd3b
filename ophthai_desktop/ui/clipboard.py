"""Text copied from the window's labels, without the invisible break hints.

Word-wrapped labels get zero-width spaces in long runs without a space
(:func:`ophthai_desktop.ui.display.breakable`), so that a name, a history or a path
wraps instead of widening the window. A selectable label copies what it holds, hints
included: a long link or identifier copied from a patient's history and pasted
elsewhere (a browser, another system's search) would not have matched. What a label of
this window puts on the clipboard (Ctrl+C, its context menu's Copy, or, on X11, the
mouse selection) is put back without them. A copy from another program (even one that
lands while a label has the focus), or from a field being edited, is left as it is.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Slot
from PySide6.QtGui import QClipboard
from PySide6.QtWidgets import QApplication, QLabel

from ophthai_desktop.ui.display import ZERO_WIDTH_SPACE


class BreakHintRemover(QObject):
    """Takes the break hints out of text a label of this application copies."""

    def __init__(self, clipboard: QClipboard, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._clipboard = clipboard
        clipboard.changed.connect(self._on_changed)

    @Slot(QClipboard.Mode)
    def _on_changed(self, mode: QClipboard.Mode) -> None:
        # The label copying has the keyboard focus (a click selects in it); with
        # another program active this application has no focus widget.
        label = QApplication.focusWidget()
        if not isinstance(label, QLabel):
            return
        text = self._clipboard.text(mode)
        # A label copies its selection. Another program's copy can land while a label
        # has the focus (a remote desktop's shared clipboard, a clipboard manager): it
        # is left whole, its other formats too.
        if ZERO_WIDTH_SPACE in text and text == _as_copied(label.selectedText()):
            # Put back once: the second change has none.
            self._clipboard.setText(text.replace(ZERO_WIDTH_SPACE, ""), mode)


def _as_copied(selected: str) -> str:
    """A label's selection as the plain text of its copy reads: paragraph and line
    separators as line breaks, no-break spaces as spaces (as Qt's ``toPlainText``)."""
    return selected.replace("\u2029", "\n").replace("\u2028", "\n").replace("\u00a0", " ")
