"""Sizes that follow the font: the pixel sizes the views were laid out for, grown with
a larger application font (a clinician who reads at 1.5 times the size), so that
columns, text boxes and charts still show their text whole."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

#: The line height, in pixels, of the font the views' sizes were chosen for (the
#: default 9 pt sans serif at 96 dpi).
DESIGN_LINE_PX = 14


def font_scale(widget: QWidget) -> float:
    """How much larger than the design's the widget's font is (never less than 1: a
    smaller font keeps the sizes as they were)."""
    return max(1.0, widget.fontMetrics().height() / DESIGN_LINE_PX)


def scaled(widget: QWidget, px: int) -> int:
    """``px``, a size chosen for the design's font, grown with the widget's font."""
    return round(px * font_scale(widget))
