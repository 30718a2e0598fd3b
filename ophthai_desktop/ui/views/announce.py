"""Telling a screen reader what the window says away from the keyboard's focus."""

from __future__ import annotations

from PySide6.QtGui import QAccessible, QAccessibleAnnouncementEvent
from PySide6.QtWidgets import QWidget


def announce(widget: QWidget, message: str, *, urgent: bool = False) -> None:
    """Have a screen reader say ``message`` (from ``widget``, which shows it): an urgent
    one interrupts what it is reading, others wait until it is done."""
    event = QAccessibleAnnouncementEvent(widget, message)
    if urgent:
        event.setPoliteness(QAccessible.AnnouncementPoliteness.Assertive)
    QAccessible.updateAccessibility(event)
