"""Dialogs at small screens and scales: their wrapped texts shown whole."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QDialog, QLabel, QWidget
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

    qtbot.waitUntil(whole)
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

    qtbot.waitUntil(lambda: not _cut_labels(dialog))
    assert dialog.frameGeometry().height() <= dialog.screen().availableGeometry().height()


def test_the_settings_dialog_fits_a_screen_narrower_than_its_columns(qtbot: QtBot) -> None:
    """Its two columns of groups were at least 927 px wide (1321 px with a font half as
    large again at 1024 x 768): on a narrower screen (here the test platform's 800 x 800)
    OK and Cancel were off it. The groups now go one under the other, and scroll."""
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)

    free = dialog.screen().availableGeometry()
    assert dialog.width() <= free.width() and dialog.height() <= free.height()
    groups = dialog.scroll_area.widget()
    assert groups.width() <= dialog.scroll_area.viewport().width()  # nothing cut on the right
    dialog.scroll_area.ensureWidgetVisible(dialog.load_model_on_startup)  # the last field
    qtbot.waitUntil(
        lambda: dialog.load_model_on_startup.visibleRegion().boundingRect().height() > 0
    )


def test_a_settings_error_on_a_short_screen_is_shown_whole_under_the_groups(
    qtbot: QtBot,
) -> None:
    """Where the screen is too short for the groups (here the test platform's 800 x
    800), they were given all its height when the dialog opened: an error shown after OK
    had no room left, and was drawn over the groups' last fields (its last line cut)."""
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    free = dialog.screen().availableGeometry()
    scroll = dialog.scroll_area
    assert scroll.widget().height() > scroll.viewport().height()  # it scrolls

    dialog.show_error(
        "The watch folder /mnt/clinic-share/oct-exports/incoming cannot be used: nothing is "
        "mounted on it, and Watch only while a share is mounted on it is off. Mount the "
        "share, turn that on, or choose another folder.",
        "watch_folder_path",
    )

    def whole() -> bool:
        error, scroll, buttons = dialog.error, dialog.scroll_area, dialog.buttons
        return (
            error.geometry().top() > scroll.geometry().bottom()
            and error.height() >= error.heightForWidth(error.width())
            and buttons.geometry().top() > error.geometry().bottom()
            and buttons.geometry().bottom() < dialog.height()
        )

    qtbot.waitUntil(whole)
    assert dialog.frameGeometry().height() <= free.height()


class _Heights(QObject):
    """The heights ``window`` is given, as its resize events tell them."""

    def __init__(self, window: QWidget) -> None:
        super().__init__(window)
        self.seen: list[int] = []
        window.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if isinstance(event, QResizeEvent):
            self.seen.append(event.size().height())
        return False


def test_a_dialog_made_shorter_than_its_texts_is_held_by_its_minimum(qtbot: QtBot) -> None:
    """The dialogs were grown back to their wrapped texts from inside each resize: made
    shorter (a drag, under a window manager), each was shorter first, its texts cut,
    then grown again, fighting the drag (the dialog jittered). Their minimum height is
    their texts' at their width, which the window manager keeps a drag to; narrowed,
    the texts wrapping to more lines, it grows, and the dialog with it."""
    dialog = PatientDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    dialog.show_error("name", f"{DATABASE_DOWN} {DATABASE_DOWN}")
    needed = dialog.layout().totalHeightForWidth(dialog.width())
    qtbot.waitUntil(lambda: dialog.height() >= needed and not _cut_labels(dialog))
    assert dialog.windowHandle().minimumHeight() >= needed  # what the window manager keeps

    heights = _Heights(dialog)
    dialog.resize(dialog.width(), needed // 2)  # as a drag of its lower edge
    qtbot.wait(50)
    assert all(height >= needed for height in heights.seen), heights.seen
    assert dialog.height() >= needed and not _cut_labels(dialog)

    narrow = dialog.width()
    wide_needed = dialog.layout().totalHeightForWidth(760)
    assert wide_needed < needed  # the message on fewer lines
    dialog.resize(760, dialog.height())
    qtbot.waitUntil(lambda: dialog.minimumHeight() == wide_needed)  # lower: it may shrink
    dialog.resize(760, wide_needed)
    assert dialog.height() == wide_needed

    dialog.resize(narrow, dialog.height())  # the message on more lines again
    qtbot.waitUntil(lambda: dialog.height() >= needed and not _cut_labels(dialog))
    assert dialog.windowHandle().minimumHeight() >= needed
