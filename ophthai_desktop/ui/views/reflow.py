"""Laying parts of a scrolling tab side by side where its width allows, one under the
other where it does not, and breaking words too long for it: a tab that scrolls
sideways hides what is on its right."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QBoxLayout,
    QLabel,
    QLayoutItem,
    QSizePolicy,
    QStyle,
    QWidget,
    QWidgetItem,
)

from ophthai_desktop.ui.display import breakable
from ophthai_desktop.ui.views.style import set_text

#: What a :class:`WordBreakingLabel` keeps room for at least.
MINIMUM_CHARACTERS = "MMMM"
#: Where a state's head ends and its details begin ("Model: unloaded (load it to run
#: the queue)", "Watch folder: does not answer; retrying in 10 s · 2 files ignored").
HEAD_ENDS = (" (", ";", " ·", " —")
#: What an :class:`ElidedLabel` shows in place of the text it leaves out.
ELLIPSIS = "…"


def head_of(text: str) -> str:
    """``text`` up to the first of :data:`HEAD_ENDS` in it: the state, not its details."""
    ends = [at for at in (text.find(end) for end in HEAD_ENDS) if at > 0]
    return text[: min(ends)] if ends else text


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


def least_width(item: QLayoutItem) -> int:
    """The least width ``item`` (a widget's item, a spacer or a box layout) takes, worked
    out from its widgets' own hints, as a box layout adds them up.

    Not the layouts' :meth:`~PySide6.QtWidgets.QLayout.minimumSize`: a nested layout
    keeps the sizes of its last layout pass until it is laid out again, so a label's new
    text is not in them yet (a status pill read as the last patient's was cut).
    """
    widget = item.widget()
    if widget is not None:  # a hidden one takes no room
        return QWidgetItem(widget).minimumSize().width()
    layout = item.layout()
    if not isinstance(layout, QBoxLayout):
        return item.minimumSize().width()  # a spacer; another kind of layout as cached
    children = [
        child for index in range(layout.count()) if (child := layout.itemAt(index)) is not None
    ]
    margins = layout.contentsMargins()
    around = margins.left() + margins.right()
    widths = [least_width(child) for child in children]
    if layout.direction() in (QBoxLayout.Direction.TopToBottom, QBoxLayout.Direction.BottomToTop):
        return max(widths, default=0) + around
    shown = len([child for child in children if not child.isEmpty()])  # spacers: no gaps
    return sum(widths) + max(0, layout.spacing()) * max(0, shown - 1) + around


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


class ElidedLabel(FittedLabel):
    """A one-line plain-text label that gives way where its row is narrow: it shows its
    text cut at the end with "…" where the whole text is wider than the label, and then
    the whole text in its tooltip, above :meth:`set_description`'s words (its tooltip
    otherwise, and its accessible description always). Its width runs from its head's
    (:func:`head_of`, and "…"; or a few characters) to its whole text's, set as it is
    fitted; its size hint is ignored, not written in Python (each layout pass would call
    it): a layout gives it room by its stretch factor."""

    def __init__(
        self, text: str = "", parent: QWidget | None = None, *, keep_head: bool = True
    ) -> None:
        super().__init__(parent)
        #: Whether its head is kept whole, else a few characters (a message's head may
        #: hold a long file name).
        self._keep_head = keep_head
        self._description = ""
        self.setWordWrap(False)
        policy = self.sizePolicy()
        policy.setHorizontalPolicy(QSizePolicy.Policy.Ignored)
        self.setSizePolicy(policy)
        self.set_full_text(text)

    def set_description(self, text: str) -> None:
        """Words on the state (a reason, what to do), told in the tooltip."""
        if text != self._description:
            self._description = text
            self.setAccessibleDescription(text)  # not the tooltip, which may hold the name
            self._fit_tooltip()

    def description(self) -> str:
        return self._description

    def elided(self) -> bool:
        return self.text() != self.full_text()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.StyleChange, QEvent.Type.ContentsRectChange):
            self._fit()  # the stylesheet's padding: the room around the text

    def _fit(self) -> None:
        metrics = self.fontMetrics()
        # QLabel's own indent where it has a frame (the stylesheet's padding): half an "x".
        indent = self.indent() if self.indent() >= 0 else 0
        if self.indent() < 0 and self.frameWidth() > 0:
            indent = metrics.horizontalAdvance("x") // 2
        around = self.width() - self.contentsRect().width() + 2 * self.margin() + indent
        full = self._full
        head = head_of(full)
        least = head if head == full else head + ELLIPSIS
        if not self._keep_head:
            least = MINIMUM_CHARACTERS
        # A pixel more each: a text measured whole and one elided are rounded apart.
        # Set first: either may resize the label now (and fit it, nested).
        self.setMinimumWidth(metrics.horizontalAdvance(least) + around + 1)
        self.setMaximumWidth(metrics.horizontalAdvance(full) + around + 1)
        room = self.width() - around
        set_text(self, metrics.elidedText(full, Qt.TextElideMode.ElideRight, room))
        self._fit_tooltip()

    def _fit_tooltip(self) -> None:
        whole = self._full if self.elided() else ""
        tooltip = "\n\n".join(part for part in (whole, self._description) if part)
        if self.toolTip() != tooltip:
            self.setToolTip(tooltip)
