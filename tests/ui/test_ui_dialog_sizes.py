"""Dialogs at small screens and scales: their wrapped texts shown whole."""

from __future__ import annotations

from PySide6.QtWidgets import QDialog, QLabel
from pytestqt.qtbot import QtBot

from ophthai_desktop.ui.messages import DATABASE_DOWN
from ophthai_desktop.ui.views.patient_dialog import PatientDialog
from ophthai_desktop.ui.views.settings_dialog import SettingsDialog


def _cut_labels(dialog: QDialog) -> list[str]:
    """The texts of ``dialog``'s shown word-wrapped labels given fewer lines than they
    wrap to."""
    return [
        label.text()
        for label in dialog.findChildren(QLabel)
        if label.isVisible()
        and label.wordWrap()
        and label.heightForWidth(label.width()) > label.height()
    ]


def test_a_message_of_several_lines_does_not_cover_the_patient_form(qtbot: QtBot) -> None:
    """The form kept the height of a one-line message: a longer one (the database not
    answering) was drawn over the history box, both unreadable."""
    dialog = PatientDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)

    dialog.show_error("name", f"{DATABASE_DOWN} {DATABASE_DOWN}")

    def whole() -> bool:
        return (
            dialog.error.geometry().top() >= dialog.history.geometry().bottom()
            and not _cut_labels(dialog)
        )

    qtbot.waitUntil(whole, timeout=10_000)
    assert dialog.error.geometry().bottom() < dialog.buttons.geometry().top()


def test_the_settings_dialog_s_notes_are_not_cut(qtbot: QtBot) -> None:
    """Opened on a screen where Qt makes a new window at most two thirds of it high
    (1024 x 768; here the test platform's 800 x 800), the dialog was given the height
    of its notes as one line each: "Set OPHTHAI_DATA_DIR to move it; then restart." and
    the demo mode's note showed half their second line."""
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)

    qtbot.waitUntil(lambda: not _cut_labels(dialog), timeout=10_000)
    assert dialog.frameGeometry().height() <= dialog.screen().availableGeometry().height()
