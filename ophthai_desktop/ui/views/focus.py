"""The keyboard focus moved by the application itself, shown as Tab shows it."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QWidget


def step_focus_to(widget: QWidget) -> None:
    """Move the keyboard focus to ``widget`` as a keyboard step the clinician sees: as
    Tab moves it, focus frame included.

    Qt's styles draw the focus frame only while the window has
    ``WA_KeyboardFocusChange``, which the Tab key sets and a mouse click clears; a
    ``setFocus`` of the application's own sets nothing, so after a verdict clicked the
    appointment picker had the focus with no frame until the next Tab. The Tab reason
    also does on arrival what Tab does (a date picker chooses its first part).
    """
    widget.setFocus(Qt.FocusReason.TabFocusReason)
    # After the move: outside a Tab key's own event Qt clears it as the focus moves.
    widget.window().setAttribute(Qt.WidgetAttribute.WA_KeyboardFocusChange)
    widget.update()  # painted with the frame
