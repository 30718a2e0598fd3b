"""Opening a date picker's calendar from the keyboard.

A QDateTimeEdit with a calendar popup opens it on a click of its arrow only (Qt 6.11):
Alt+Down stepped the date down a day instead, and F4 did nothing, where a combo box
opens its list on both.
"""

from __future__ import annotations

from typing import cast

from PySide6.QtCore import QEvent, QKeyCombination, QPointF, Qt
from PySide6.QtGui import QKeyEvent, QMouseEvent
from PySide6.QtWidgets import (
    QApplication,
    QDateEdit,
    QDateTimeEdit,
    QStyle,
    QStyleOptionComboBox,
)

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


class CalendarKeys:
    """Mixed into a date picker with a calendar popup, before its Qt class: gives it
    :data:`OPEN_KEYS`; :meth:`before_calendar_opens` is called as one is pressed, before
    the calendar opens. Key handlers, not an event filter, which would run Python at
    each of the picker's events (its page's layout passes among them)."""

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if opens_calendar(event):
            self.before_calendar_opens()
            open_calendar(cast(QDateTimeEdit, self))
            event.accept()
            return
        super().keyPressEvent(event)  # type: ignore[misc]

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if opens_calendar(event):
            event.accept()  # nor does its release step the date
            return
        super().keyReleaseEvent(event)  # type: ignore[misc]

    def before_calendar_opens(self) -> None:
        """Called as one of :data:`OPEN_KEYS` is pressed, before the calendar opens."""


class CalendarDateEdit(CalendarKeys, QDateEdit):
    """A date picker whose calendar opens by :data:`OPEN_KEYS` too."""
