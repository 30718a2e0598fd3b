"""``offer``: a button turned on or off, with its tooltip, setting only what changes."""

from __future__ import annotations

from PySide6.QtWidgets import QPushButton, QWidget
from pytestqt.qtbot import QtBot

from ophthai_desktop.ui.views.style import offer


def test_a_button_turned_off_under_a_disabled_parent_stays_off_with_it_enabled(
    qtbot: QtBot,
) -> None:
    """The button's own state decides what is set, not ``isEnabled()``, which is off
    under a disabled parent too (the verdict buttons' group is, with no result shown):
    a button turned off there was left on, and came back on with its parent."""
    group = QWidget()
    qtbot.addWidget(group)
    button = QPushButton("Approve", group)
    group.setEnabled(False)

    offer(button, "Nothing to approve", "Approve the result")
    group.setEnabled(True)

    assert not button.isEnabled()
    assert button.toolTip() == "Nothing to approve"
    offer(button, "", "Approve the result")
    assert button.isEnabled() and button.toolTip() == "Approve the result"
    group.setEnabled(False)
    offer(button, "", "Approve the result")  # on already, under a parent off
    group.setEnabled(True)
    assert button.isEnabled()
