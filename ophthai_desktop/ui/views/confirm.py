"""A yes/no question that does not block the event loop."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QAbstractButton, QMessageBox, QWidget


def ask(
    parent: QWidget, title: str, text: str, yes_text: str, on_yes: Callable[[], None]
) -> QMessageBox:
    """Show the question window-modally; ``on_yes`` runs if the clinician agrees."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
    box.setObjectName("confirmBox")
    yes = box.addButton(yes_text, QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(QMessageBox.StandardButton.Cancel)

    def clicked(button: QAbstractButton) -> None:
        if button is yes:
            on_yes()

    box.buttonClicked.connect(clicked)
    box.setProperty("yesButton", yes)
    box.open()
    return box
