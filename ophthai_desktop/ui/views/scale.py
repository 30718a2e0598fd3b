"""Sizes that follow the font: the pixel sizes the views were laid out for, grown with
a larger application font (a clinician who reads at 1.5 times the size), so that
columns, text boxes and charts still show their text whole; and the stylesheet's text
sizes, relative to the application font."""

from __future__ import annotations

import re

from PySide6.QtGui import QFont, QFontInfo, QGuiApplication
from PySide6.QtWidgets import QWidget

#: The line height, in pixels, of the font the views' sizes were chosen for (the
#: default 9 pt sans serif at 96 dpi).
DESIGN_LINE_PX = 14
#: The point size of that font: the stylesheet's ``font-size: ...pt`` are for it.
DESIGN_POINT_SIZE = 9.0

_FONT_SIZE_PT = re.compile(r"(font-size:\s*)(\d+(?:\.\d+)?)pt\b")


def font_scale(widget: QWidget) -> float:
    """How much larger than the design's the widget's font is (never less than 1: a
    smaller font keeps the sizes as they were)."""
    return max(1.0, widget.fontMetrics().height() / DESIGN_LINE_PX)


def scaled(widget: QWidget, px: int) -> int:
    """``px``, a size chosen for the design's font, grown with the widget's font."""
    return round(px * font_scale(widget))


def screen_pixel_ratio() -> float:
    """The most device pixels per logical pixel of any screen (2 on a 4K monitor at
    200 %): pictures made at their logical size are drawn blurred, scaled up, there."""
    ratios = [screen.devicePixelRatio() for screen in QGuiApplication.screens()]
    return max([1.0, *ratios])


def font_sized(stylesheet: str, font: QFont) -> str:
    """``stylesheet`` with its text sizes (``font-size: 18pt``, chosen for the design's
    9 pt font) in proportion to ``font``, the application's: at 1.5 times the font the
    patient's name is 27 pt. Qt reads a stylesheet's sizes as fixed; this makes them
    relative, as a CSS ``em`` would (which Qt does not read in ``font-size``)."""
    ratio = QFontInfo(font).pointSizeF() / DESIGN_POINT_SIZE
    if ratio <= 0 or ratio == 1:
        return stylesheet
    return _FONT_SIZE_PT.sub(
        lambda found: f"{found[1]}{round(float(found[2]) * ratio, 1):g}pt", stylesheet
    )
