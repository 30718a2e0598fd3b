"""Laying parts of a scrolling tab side by side where its width allows, one under the
other where it does not, and breaking words too long for it: a tab that scrolls
sideways hides what is on its right."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QAbstractScrollArea, QBoxLayout, QLabel, QStyle, QWidget

from ophthai_desktop.ui.display import breakable
from ophthai_desktop.ui.views.style import set_text

#: What a :class:`WordBreakingLabel` keeps room for at least.
MINIMUM_CHARACTERS = "MMMM"


def room_in(scroll: QAbstractScrollArea) -> int:
    """The width ``scroll`` gives its content, its vertical scroll bar counted as shown.

    Counted always, so that the decision does not depend on the content's height: a
    layout that becomes taller when its parts go one under the other brings the scroll
    bar, which would make the room narrower and could flip the layout back and forth.
    """
    bar = scroll.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent, None, scroll)
    return scroll.width() - 2 * scroll.frameWidth() - bar


def set_side_by_side(layout: QBoxLayout, side_by_side: bool) -> bool:
    """Lay ``layout``'s parts left to right or top to bottom; True when that changed."""
    direction = (
        QBoxLayout.Direction.LeftToRight if side_by_side else QBoxLayout.Direction.TopToBottom
    )
    if layout.direction() == direction:
        return False
    layout.setDirection(direction)
    return True


class FittedLabel(QLabel):
    """A word-wrapped plain-text label that shows its text fitted to its width (see
    :meth:`_fit`, called again when it is resized or its font changes): the text as set
    is :meth:`full_text`, and the name a screen reader is given."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setWordWrap(True)
        self._full = ""

    def set_full_text(self, text: str) -> None:
        if text != self._full:
            self._full = text
            # Heard whole: a screen reader was given the shown text (a word in pieces).
            self.setAccessibleName(text)
            self._fit()

    def full_text(self) -> str:
        return self._full

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:  # the stylesheet's, or a larger font
            self._font_changed()

    def _font_changed(self) -> None:
        self._fit()

    def _fit(self) -> None:
        raise NotImplementedError


class WordBreakingLabel(FittedLabel):
    """A word-wrapped plain-text label whose words may break where one is wider than the
    label (a title in a large font: "Vitreomacular" at 24 pt is 255 px), rather than
    keeping the label, and the tab around it, as wide as its longest word. The text
    shown has zero-width spaces in those words only, and only while they do not fit;
    :meth:`full_text`, and the name a screen reader is given, is the text as set. Its
    least width is a few characters."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._fit_minimum_width()

    def _font_changed(self) -> None:
        self._fit_minimum_width()
        self._fit()

    def _fit_minimum_width(self) -> None:
        # Set, so that the layout takes it instead of the longest word (and runs no Python).
        self.setMinimumWidth(self.fontMetrics().horizontalAdvance(MINIMUM_CHARACTERS))

    def _fit(self) -> None:
        width = self.contentsRect().width() - 2 * self.margin()
        metrics = self.fontMetrics()
        words = self._full.split(" ")
        shown = " ".join(
            word if metrics.horizontalAdvance(word) <= width else breakable(word, longest=1)
            for word in words
        )
        set_text(self, shown)
