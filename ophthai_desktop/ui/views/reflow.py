"""Laying parts of a scrolling tab side by side where its width allows, one under the
other where it does not: a tab that scrolls sideways hides what is on its right."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractScrollArea, QBoxLayout, QStyle


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
