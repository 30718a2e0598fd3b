"""In-window toasts, for where the desktop has no system tray."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from PySide6.QtCore import QEvent, QMargins, QObject, QPoint, QRect, Qt, QTimer, Signal, Slot
from PySide6.QtGui import (
    QHideEvent,
    QKeySequence,
    QMouseEvent,
    QShortcut,
    QShowEvent,
)
from PySide6.QtWidgets import (
    QAbstractScrollArea,
    QFrame,
    QHBoxLayout,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from ophthai_desktop.ui.display import breakable
from ophthai_desktop.ui.views.announce import announce
from ophthai_desktop.ui.views.scale import scaled
from ophthai_desktop.ui.views.style import set_style_property

SHOW_MS = 8000
MARGIN = 10
#: The text's width (at the design's font): what it takes where there is room (from
#: TEXT_PX to TEXT_MOST_PX), and the least it is narrowed to where an area is narrower
#: (a wrapped line more, not hidden).
TEXT_PX = 300
TEXT_MOST_PX = 360
TEXT_LEAST_PX = 200
#: An area that ends this close above the footer (the status bar) may reach over it.
FOOTER_GAP_PX = 8
#: The height a list that makes room for the toast keeps for its entries (about one
#: entry, at the design's font): a shorter one has the toast go elsewhere.
ENTRIES_LEAST_PX = 30

#: What an alert is about, least to most urgent.
AlertKind = Literal["info", "warning", "critical"]
URGENCY: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}
#: What moves or resizes the area a toast sits in.
PLACE_EVENTS = (QEvent.Type.Resize, QEvent.Type.Move, QEvent.Type.Show, QEvent.Type.Hide)


class ToastText(QLabel):
    """The toast's text, which says when its font changes (the toast's widths are
    measured in it): at the change, not at each paint. The label's own change, not the
    toast's: the label can get the application's new font after the toast has had its
    own (the stylesheet is applied again for it a turn of the event loop later), and
    widths measured at the toast's change were at times the old font's.

    Signals:
        font_changed(): the label's font is a new one.
    """

    font_changed = Signal()

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.FontChange:
            self.font_changed.emit()


class Toast(QFrame):
    """A message that goes away by itself, in the bottom-right corner of the first of
    ``anchors`` shown in the window with room for it, else of the window. An anchor
    too short for it is taken with the strip of ``footer`` beneath it, where it ends
    just above the footer; one too narrow, with the toast narrowed (down to
    :data:`TEXT_LEAST_PX` of text, a line longer). An anchor that is a list (a scroll
    area) makes room for it: while it shows there, the list's entries end above it
    (scrolled to, not covered), where the list keeps :data:`ENTRIES_LEAST_PX` for them.

    The main window gives the notifications list, the notifications dock, then its
    central area, and its status bar as the footer: the toast is the newest
    notification, shown at the foot of the list of the others, which it covered the
    right part of for its 8 s. Where the list is short (800 x 600, a larger font) it
    goes over the dock (its header and buttons) and the status bar's passing messages
    beneath it rather than over the patient page: in the central area's corner it
    covered the result card the clinician was reading, the analysis' Approve and the
    scan viewer's Reset; in the window's, the job queue's Cancel.

    A click or Escape (anywhere in the window, the focus staying where it is) dismisses
    it; a screen reader is told what it says as it shows (at once for a critical one)."""

    def __init__(
        self, parent: QWidget, anchors: Sequence[QWidget] = (), footer: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._anchors = tuple(anchors)
        self._footer = footer
        self.setObjectName("toast")
        self.title = QLabel()
        self.title.setObjectName("toastTitle")
        self.title.setStyleSheet("font-weight: bold;")
        self.label = ToastText()
        self.label.setObjectName("toastText")
        self.label.setWordWrap(True)
        self._text_px = self._text_least_px = self._text_most_px = 0
        self._measure_text()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        column = QWidget()
        self._column = QVBoxLayout(column)
        self._column.setContentsMargins(0, 0, 0, 0)
        self._column.addWidget(self.title)
        self._column.addWidget(self.label)
        layout.addWidget(column)
        self._fit_text(None)
        self.label.font_changed.connect(self._on_label_font_changed)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.hide)
        # Works only while the toast shows (Qt's rule for a hidden widget's shortcut):
        # otherwise Escape does what it did. The toast takes no focus.
        dismiss = QShortcut(QKeySequence(Qt.Key.Key_Escape), self)
        dismiss.setContext(Qt.ShortcutContext.WindowShortcut)
        dismiss.setWhatsThis("Dismiss the alert shown over the window")  # Help's list of keys
        dismiss.activated.connect(self.hide)
        self.kind: AlertKind = "info"
        self._text = ""  # as given: the label's may have breaks put in (breakable)
        #: The analyses the message showing speaks of and not yet validated (a burst of
        #: critical findings gathered into one message speaks of several).
        self.about: frozenset[int] = frozenset()
        #: A less urgent message that came while a more urgent one showed.
        self._waiting: tuple[str, str, AlertKind, frozenset[int]] | None = None
        self.hide()

    def show_message(
        self,
        title: str,
        text: str,
        kind: AlertKind = "info",
        *,
        about: int | Iterable[int] | None = None,
    ) -> None:
        """Show a message (``about`` an analysis or several, see :meth:`withdraw`); one
        less urgent than the one showing waits until that one goes (a critical finding is
        not wiped off by a routine message)."""
        abouts = frozenset(() if about is None else (about,) if isinstance(about, int) else about)
        if self.isVisible() and URGENCY[kind] < URGENCY[self.kind]:
            self._waiting = (title, text, kind, abouts)
            return
        self.kind = kind
        self.about = abouts
        self.title.setText(title)
        self._text = text
        self.label.setText(breakable(text))  # a long name without spaces: not wider
        self.setAccessibleName(title)
        self.setAccessibleDescription(text)
        set_style_property(self, "kind", kind)
        self._adjust_size()
        self._place()
        self.show()
        self.raise_()
        self._timer.start(SHOW_MS)
        # A critical finding interrupts what the screen reader is reading.
        announce(self, f"{title}: {text}", urgent=kind == "critical")

    def withdraw(self, about: int) -> None:
        """The analysis ``about`` is validated: a message about it goes, showing or
        waiting. A critical finding's says "preliminary, needs validation", and it went
        on saying so for its 8 s after the clinician had approved or rejected it. One
        about several goes once each of them is validated."""
        if self._waiting is not None and about in self._waiting[3]:
            title, text, kind, abouts = self._waiting
            rest = abouts - {about}
            self._waiting = (title, text, kind, rest) if rest else None
        if about in self.about:
            self.about -= {about}
            if not self.about and self.isVisible():
                self.hide()  # a message waiting behind it shows now

    def _measure_text(self) -> None:
        """The text's widths for the label's font: wide enough that a finding reads in
        two or three lines, not five."""
        self._text_px = scaled(self.label, TEXT_PX)
        self._text_least_px = scaled(self.label, TEXT_LEAST_PX)
        self._text_most_px = scaled(self.label, TEXT_MOST_PX)

    @Slot()
    def _on_label_font_changed(self) -> None:
        """A new font (the desktop's setting changed with the window open): the text's
        widths follow it. Measured once, they kept a larger font's text to the old
        width, and the toast grew taller, not wider."""
        self._measure_text()
        if self.isVisible():
            self._place()  # sizes the toast for its area, then moves it there
        else:
            self._fit_text(None)

    def text(self) -> str:
        return f"{self.title.text()}: {self._text}" if self.isVisible() else ""

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.hide()

    def showEvent(self, event: QShowEvent) -> None:
        """Shown, or shown again with the window: follow the areas' sizes and places
        (only while shown: a Python event filter sees every event the widget gets, and
        each one has to take the interpreter lock). Installing twice installs once."""
        super().showEvent(event)
        for widget in self._watched():
            widget.installEventFilter(self)
        self._place()  # the window may have changed while it was hidden

    def hideEvent(self, event: QHideEvent) -> None:
        super().hideEvent(event)
        if not self.isHidden():
            return  # the window went to the tray or was minimised: back with it
        self._make_room(None)
        for widget in self._watched():
            widget.removeEventFilter(self)
        if self._waiting is not None:
            QTimer.singleShot(0, self._show_waiting)

    @Slot()
    def _show_waiting(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting is not None and not self.isVisible():
            title, text, kind, about = waiting
            self.show_message(title, text, kind, about=about)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() in PLACE_EVENTS and self.isVisible():
            self._place()
        return False

    def area(self) -> QRect:
        """Where the toast goes, in its parent's coordinates, and the toast sized for
        it: the first anchor shown in the window (not a floating dock) with room for it,
        then with the footer's strip beneath it, narrowing the toast where the anchor is
        narrower; else the whole window. A list's area is its entries' (its viewport,
        without the room made for the toast)."""
        return self._spot()[0]

    def _spot(self) -> tuple[QRect, QAbstractScrollArea | None]:
        """:meth:`area`, and the list that makes room for the toast there (None where
        it goes over an area that is not a list)."""
        parent = self.parentWidget()
        if parent is None:
            return QRect(), None
        for anchor in self._anchors:
            if not anchor.isVisible() or anchor.window() is not parent:
                continue
            if isinstance(anchor, QAbstractScrollArea):
                viewport = anchor.viewport()
                entries = viewport.size().grownBy(anchor.viewportMargins())
                # The toast ends MARGIN above the list's foot, right below its entries.
                rect = QRect(viewport.mapTo(parent, QPoint(0, 0)), entries)
                keep_px = scaled(self.label, ENTRIES_LEAST_PX) - MARGIN
                if self._fits(rect, keep_px=keep_px):
                    return rect, anchor
                continue
            rect = QRect(anchor.mapTo(parent, QPoint(0, 0)), anchor.size())
            for spot in (rect, self._over_footer(rect)):
                if spot is not None and self._fits(spot):
                    return spot, None
        self._fit_text(None)
        return parent.rect(), None

    def _make_room(self, room_in: QAbstractScrollArea | None) -> None:
        """Have the list ``room_in`` end its entries above the toast, and the other
        lists among the anchors take their whole height again."""
        for anchor in self._anchors:
            if isinstance(anchor, QAbstractScrollArea):
                below = self.height() + MARGIN if anchor is room_in else 0
                if anchor.viewportMargins().bottom() != below:
                    anchor.setViewportMargins(0, 0, 0, below)

    def _over_footer(self, rect: QRect) -> QRect | None:
        """``rect`` down to the window's bottom over the footer, where it ends just above
        the footer (None where it does not)."""
        footer = self._footer
        parent = self.parentWidget()
        if footer is None or parent is None or not footer.isVisible():
            return None
        top = footer.mapTo(parent, QPoint(0, 0)).y()
        if not 0 <= top - (rect.bottom() + 1) <= FOOTER_GAP_PX:
            return None
        return QRect(rect.left(), rect.top(), rect.width(), top + footer.height() - rect.top())

    def _fits(self, rect: QRect, keep_px: int = 0) -> bool:
        """Size the toast for ``rect`` (narrowed where need be); whether it fits there,
        leaving ``keep_px`` of its height free."""
        layout = self.layout()
        assert layout is not None  # set in __init__
        margins = layout.contentsMargins()
        chrome = margins.left() + margins.right() + 2 * self.frameWidth()
        self._fit_text(rect.width() - 2 * MARGIN - chrome)
        room = self.size().grownBy(QMargins(MARGIN, MARGIN, MARGIN, MARGIN))
        return rect.width() >= room.width() and rect.height() >= room.height() + keep_px

    def _fit_text(self, room_px: int | None) -> None:
        """Let the text take its width, or at most ``room_px`` (not below the least)."""
        most = self._text_most_px
        if room_px is not None:
            most = max(self._text_least_px, min(most, room_px))
        self.label.setMinimumWidth(min(self._text_px, most))
        self.label.setMaximumWidth(most)
        self._adjust_size()

    def _adjust_size(self) -> None:
        """The toast's size for its text as it is now. Qt's layouts keep the size they
        had for the text (or width) before until the event loop comes round: a toast
        replaced while it showed kept its height, and a line more of the new text was
        cut (its first and last lines half hidden)."""
        self._column.activate()
        self.adjustSize()

    def _watched(self) -> list[QWidget]:
        """The window, the anchors and what holds them (a dock that moves or closes)."""
        parent = self.parentWidget()
        if parent is None:
            return []
        watched = [parent]
        for anchor in self._anchors:
            widget: QWidget | None = anchor
            while widget is not None and widget is not parent and widget not in watched:
                watched.append(widget)
                widget = widget.parentWidget()
        return watched

    @Slot()
    def _place(self) -> None:
        area, room_in = self._spot()
        if area.isNull():
            return
        left = max(area.left() + MARGIN, area.right() + 1 - self.width() - MARGIN)
        top = max(area.top() + MARGIN, area.bottom() + 1 - self.height() - MARGIN)
        self.move(left, top)
        self._make_room(room_in)
