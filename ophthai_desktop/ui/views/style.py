"""Switching a widget's look through a dynamic property the stylesheet matches on."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget


def set_style_property(widget: QWidget, name: str, value: Any) -> None:
    """Set ``name`` and re-apply the stylesheet, only when the value changes
    (re-polishing resolves the stylesheet again, which is not free)."""
    if widget.property(name) == value:
        return
    widget.setProperty(name, value)
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)


def set_text(label: Any, text: str) -> None:
    """``label.setText(text)`` unless it already shows ``text`` (no relayout)."""
    if label.text() != text:
        label.setText(text)


def offer(widget: QWidget, why_not: str, tip: str) -> None:
    """``widget`` on with ``tip`` as its tooltip, or off with ``why_not`` (non-empty) as
    its tooltip; only what changes is set (each ``setToolTip`` sends an event through
    the widget, and a patient's every update calls this)."""
    enabled = not why_not
    # The widget's own state: ``isEnabled()`` is off under a disabled parent too, and
    # one turned off there was left on, to be enabled with its parent.
    if widget.testAttribute(Qt.WidgetAttribute.WA_ForceDisabled) == enabled:
        widget.setEnabled(enabled)
    text = tip if enabled else why_not
    if widget.toolTip() != text:
        widget.setToolTip(text)
