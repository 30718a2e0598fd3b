"""Opening a date picker's calendar from the keyboard.

A QDateTimeEdit with a calendar popup opens it on a click of its arrow only (Qt 6.11):
Alt+Down stepped the date down a day instead, and F4 did nothing, where a combo box
opens its list on both.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QKeyCombination, QObject, QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import QApplication, QDateTimeEdit, QStyle, QStyleOptionComboBox

#: The keys that open a combo box's list: they open the calendar.
OPEN_KEYS = (
    QKeyCombination(Qt.KeyboardModifier.AltModifier, Qt.Key.Key_Down),
    QKeyCombination(Qt.KeyboardModifier.AltModifier, Qt.Key.Key_Up),
    QKeyCombination(Qt.KeyboardModifier.NoModifier, Qt.Key.Key_F4),
)


def opens_calendar(event: QKeyEvent) -> bool:
    """Whether ``event`` is one of :data:`OPEN_KEYS` (the keypad's arrows too)."""
    modifiers = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
    return QKeyCombination(modifiers, Qt.Key(event.key())) in OPEN_KEYS


def open_calendar(edit: QDateTimeEdit) -> None:
    """Pop up ``edit``'s calendar as a click on its arrow does, by that click: Qt's own
    path, private, gives the calendar the date shown, the allowed range, the keyboard
    and its place (under the picker, or above where the screen has no room), and keeps
    the popup's own record of the date it opened at, so that it works as after a click
    (a day chosen is the picker's, the time kept)."""
    if not edit.calendarPopup() or edit.isReadOnly():
        return
    option = QStyleOptionComboBox()
    option.initFrom(edit)
    option.editable = True
    option.subControls = QStyle.SubControl.SC_All
    arrow = edit.style().subControlRect(
        QStyle.ComplexControl.CC_ComboBox, option, QStyle.SubControl.SC_ComboBoxArrow, edit
    )
    at = QPointF(arrow.center())
    click = QMouseEvent(
        QEvent.Type.MouseButtonPress,
        at,
        edit.mapToGlobal(at),
        Qt.MouseButton.LeftButton,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(edit, click)


class CalendarKeys(QObject):
    """Gives ``edit`` (a date picker with a calendar popup) :data:`OPEN_KEYS`;
    ``before_opening``, if given, is called as one of them is pressed, before the
    calendar opens (to make the picker's range true again, say)."""

    def __init__(
        self, edit: QDateTimeEdit, *, before_opening: Callable[[], None] | None = None
    ) -> None:
        super().__init__(edit)
        self._edit = edit
        self._before_opening = before_opening
        edit.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self._edit and isinstance(event, QKeyEvent) and opens_calendar(event):
            if event.type() == QEvent.Type.KeyPress:
                if self._before_opening is not None:
                    self._before_opening()
                open_calendar(self._edit)
            return True  # neither the press nor its release steps the date
        return False
