"""A yes/no question that does not block the event loop."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractButton, QMessageBox, QWidget

#: The object name of the question boxes; the answered ones go when the next is asked.
CONFIRM_BOX = "confirmBox"


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

    The questions answered before on ``parent`` are deleted first: each stayed a child
    of the window, so a day of cancelled appointments and deleted patients kept them all.
    The last one stays until the next question (its controller may still hold it).
    """
    for answered in parent.findChildren(
        QMessageBox, CONFIRM_BOX, Qt.FindChildOption.FindDirectChildrenOnly
    ):
        if not answered.isVisible():
            answered.deleteLater()
    box = QMessageBox(QMessageBox.Icon.Question, title, text, parent=parent)
    box.setObjectName(CONFIRM_BOX)
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
