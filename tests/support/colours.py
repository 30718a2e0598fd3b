"""Colour contrast as WCAG 2 defines it, for tests that check text can be read."""

from __future__ import annotations

from PySide6.QtGui import QColor

#: WCAG AA's least contrast for normal text.
AA_TEXT = 4.5


def luminance(colour: QColor) -> float:
    """WCAG's relative luminance of ``colour`` (0 black, 1 white)."""

    def channel(value: float) -> float:
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    return (
        0.2126 * channel(colour.redF())
        + 0.7152 * channel(colour.greenF())
        + 0.0722 * channel(colour.blueF())
    )


def contrast(a: QColor, b: QColor) -> float:
    """WCAG's contrast ratio of two colours (1 to 21), whichever is lighter."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)
