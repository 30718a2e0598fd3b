"""A yes/no question that does not block the event loop."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QAbstractButton, QMessageBox, QWidget


def ask(
    parent: QWidget,
    title: str,
    text: str,
    yes_text: str,
    on_yes: Callable[[], None],
    *,
    no_text: str | None = None,
) -> QMessageBox:
    """Show the question window-modally; ``on_yes`` runs if the clinician agrees.

    ``no_text``: the other answer, where a plain "Cancel" would read as the action
    itself ("Cancel appointment?"); it is the default and Escape's.
    """
    box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
    box.setObjectName("confirmBox")
    yes = box.addButton(yes_text, QMessageBox.ButtonRole.DestructiveRole)
    if no_text is None:
        no = box.addButton(QMessageBox.StandardButton.Cancel)
    else:
        no = box.addButton(no_text, QMessageBox.ButtonRole.RejectRole)
    box.setDefaultButton(no)
    box.setEscapeButton(no)

    def clicked(button: QAbstractButton) -> None:
        if button is yes:
            on_yes()

    box.buttonClicked.connect(clicked)
    box.setProperty("yesButton", yes)
    box.setProperty("noButton", no)
    box.open()
    return box
