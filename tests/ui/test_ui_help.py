"""Help ▸ Keyboard shortcuts and Help ▸ Getting started: a new clinician's way in from
the window itself (the Help menu had only the API docs and About)."""

from __future__ import annotations

import re

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QFont, QKeySequence, QShortcut
from PySide6.QtWidgets import QAbstractButton, QApplication, QToolButton, QWidget
from pytestqt.qtbot import QtBot

from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.views import getting_started
from ophthai_desktop.ui.views.help import HelpDialog
from tests.ui.conftest import Maker

NATIVE = QKeySequence.SequenceFormat.NativeText
#: Open and close cycles: enough that a dialog kept per cycle shows.
CYCLES = 30


def keys(sequence: QKeySequence | QKeySequence.StandardKey | str) -> str:
    return QKeySequence(sequence).toString(NATIVE)


def help_dialogs(gui: GuiSession) -> list[HelpDialog]:
    """The Help menu's dialogs the window holds, shown or hidden."""
    return gui.window.findChildren(HelpDialog)


def sections(dialog: HelpDialog) -> dict[str, list[str]]:
    """The dialog's text as read: each heading with the lines under it."""
    browser = dialog.text
    found: dict[str, list[str]] = {"": []}
    heading = ""
    block = browser.document().begin()
    while block.isValid():
        if block.blockFormat().headingLevel():
            heading = block.text()
            found[heading] = []
        elif block.text():
            found[heading].append(block.text())
        block = block.next()
    return found


def menus_of(gui: GuiSession) -> dict[str, list[str]]:
    return {
        action.text().replace("&", ""): [
            entry.text().replace("&", "") for entry in action.menu().actions()
        ]
        for action in gui.window.menuBar().actions()
    }


def test_f1_shows_the_keyboard_shortcuts_once_and_escape_closes_them(
    qtbot: QtBot, gui: GuiSession
) -> None:
    window = gui.window
    assert "Keyboard shortcuts" in menus_of(gui)["Help"]
    assert window.shortcuts_action.shortcut() == QKeySequence(QKeySequence.StandardKey.HelpContents)
    # F1 is help's key and nothing else's in the window.
    taken = [
        action.text()
        for action in window.findChildren(QAction)
        if QKeySequence("F1") in action.shortcuts()
    ]
    assert taken == [window.shortcuts_action.text()]
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    qtbot.keyClick(window, Qt.Key.Key_F1)
    qtbot.waitUntil(lambda: len(help_dialogs(gui)) == 1 and help_dialogs(gui)[0].isVisible())
    dialog = help_dialogs(gui)[0]
    assert dialog.windowTitle() == "Keyboard shortcuts"

    window.shortcuts_action.trigger()  # again: the open one comes to the front
    assert help_dialogs(gui) == [dialog]

    dialog.activateWindow()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is dialog.text)
    qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not help_dialogs(gui))  # closed, and deleted


def test_the_shortcuts_list_each_key_of_the_window_under_its_menu_or_part(
    qtbot: QtBot, gui: GuiSession
) -> None:
    window = gui.window
    window.shortcuts_action.trigger()
    dialog = help_dialogs(gui)[0]
    found = sections(dialog)

    def row(heading: str, what: str, shortcut: str) -> None:
        lines = found.get(heading)
        assert lines is not None, (heading, list(found))
        assert what in lines, (heading, what, lines)
        assert lines[lines.index(what) + 1] == shortcut, (heading, what, lines)

    row("File", "New patient", keys(QKeySequence.StandardKey.New))
    row("Edit", "Find patient", keys(QKeySequence.StandardKey.Find))
    row("AI", "Analyse", keys("Ctrl+R"))
    row("View", "Next area", keys("F6"))
    row("Tools", "Settings", keys("Ctrl+,"))
    row("Help", "Keyboard shortcuts", window.shortcuts_action.shortcut().toString(NATIVE))
    row("Scans tab", "Fit the image to the view", keys("Ctrl+0"))
    row("Analysis tab", "Approve", keys("Ctrl+Shift+A"))
    row("Analysis tab", "Reject", keys("Ctrl+Shift+X"))
    row("Patients", "Delete the chosen patient (after asking)", keys("Delete"))
    # Enter in the patient list opened the patient, unlisted (the view's activated signal)
    row("Patients", "Open the patient the keyboard is on", f"{keys('Return')} or {keys('Enter')}")
    row("Job queue", "Open the chosen job's patient", f"{keys('Return')} or {keys('Enter')}")
    row("Notifications", "Delete the chosen notification", keys("Delete"))
    # A widget's own keys: a label's mnemonic to its field, a date picker's calendar.
    row("Anywhere in the window", "Go to the Status filter", keys("Alt+S"))
    calendar = f"{keys('Alt+Down')} or {keys('Alt+Up')} or {keys('F4')}"
    row("Analysis tab", "Open a date's calendar", calendar)
    # The menus in the menu bar's order, before the parts of the window.
    headings = [heading for heading in found if heading]
    assert headings[:6] == ["File", "Edit", "View", "AI", "Tools", "Help"]

    # Every key the window has is there, in the platform's words: none left out.
    shown = {line for lines in found.values() for line in lines}
    shown |= {
        part.removeprefix("the keyboard's ").removesuffix(" key")
        for line in shown
        for part in line.split(" or ")
    }
    every = {
        sequence.toString(NATIVE)
        for action in window.findChildren(QAction)
        for sequence in action.shortcuts()
    }
    every |= {
        sequence.toString(NATIVE)
        for shortcut in window.findChildren(QShortcut)
        for sequence in list(shortcut.keys())  # a QShortcut, not a dict
    }
    every |= {
        button.shortcut().toString(NATIVE)
        for button in window.findChildren(QAbstractButton)
        if not isinstance(button, QToolButton)
        and button.shortcut() != QKeySequence.mnemonic(button.text())
    }
    every.discard("")
    assert len(every) >= 15
    assert every <= shown, every - shown
    # Each says what it does (a QShortcut made without saying would read so).
    assert "(not described)" not in shown
    dialog.close()


def test_a_shortcut_with_several_keys_is_listed_with_each(gui: GuiSession) -> None:
    """A QShortcut made from a standard key has each of the platform's keys for it (on
    macOS, Delete is ⌦ and ⌫, the key most Mac keyboards have): only the first was
    listed, a key the clinician's keyboard may not have."""
    table = gui.patient_list.table
    shortcut = QShortcut(table)
    shortcut.setKeys([QKeySequence(Qt.Key.Key_Delete), QKeySequence(Qt.Key.Key_Backspace)])
    shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
    shortcut.setWhatsThis("Remove the chosen patient")

    lines = sections(gui.help.open_shortcuts())["Patients"]

    what = lines.index("Remove the chosen patient")
    assert lines[what + 1] == f"{keys('Delete')} or {keys('Backspace')}"


def test_a_key_only_some_keyboards_have_is_named_as_a_key(gui: GuiSession) -> None:
    """Zoom in was listed "Ctrl++ or Zoom In or Ctrl+=": the keyboard's Zoom In key (a
    platform's binding of the standard zoom key), named bare, read as a description."""
    table = gui.patient_list.table
    shortcut = QShortcut(table)
    shortcut.setKeys([QKeySequence(Qt.Key.Key_ZoomIn), QKeySequence("Ctrl+Shift+Z")])
    shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)
    shortcut.setWhatsThis("Enlarge the list")
    lone = {  # the window's keys pressed alone that only some keyboards have
        sequence.toString(NATIVE)
        for bound in [*gui.window.findChildren(QAction), *gui.window.findChildren(QShortcut)]
        for sequence in (bound.shortcuts() if isinstance(bound, QAction) else bound.keys())
        if sequence.count() == 1
        and sequence[0].keyboardModifiers() == Qt.KeyboardModifier.NoModifier
        and sequence[0].key().value >= Qt.Key.Key_Back.value
    }

    found = sections(gui.help.open_shortcuts())

    lines = found["Patients"]
    zoom = keys(QKeySequence(Qt.Key.Key_ZoomIn))
    assert lines[lines.index("Enlarge the list") + 1] == (
        f"{keys('Ctrl+Shift+Z')} or the keyboard's {zoom} key"
    )
    parts = {part for lines in found.values() for line in lines for part in line.split(" or ")}
    assert zoom in lone and not lone & parts


def test_no_key_of_the_window_is_bound_twice_where_both_would_act(gui: GuiSession) -> None:
    """Each key Help lists acts: two bindings of one key that can act at once are
    ambiguous, and Qt then runs neither. A key bound for the whole window is bound
    nowhere else in it; one bound to a part, in no part inside it or around it."""
    window = gui.window
    whole = (Qt.ShortcutContext.WindowShortcut, Qt.ShortcutContext.ApplicationShortcut)
    bound: list[tuple[str, QWidget, str]] = []  # (key, where it acts, what)
    for action in window.findChildren(QAction):
        owner = action.parent()
        assert isinstance(owner, QWidget)
        where = window if action.shortcutContext() in whole else owner
        bound += [(key.toString(NATIVE), where, action.text()) for key in action.shortcuts()]
    for shortcut in window.findChildren(QShortcut):
        owner = shortcut.parent()
        assert isinstance(owner, QWidget)
        where = window if shortcut.context() in whole else owner
        what = shortcut.whatsThis()
        bound += [(key.toString(NATIVE), where, what) for key in list(shortcut.keys())]
    for button in window.findChildren(QAbstractButton):
        if not button.shortcut().isEmpty() and button.shortcut() != QKeySequence.mnemonic(
            button.text()
        ):  # a button's keys act in its whole window
            bound.append((button.shortcut().toString(NATIVE), window, button.text()))
    assert len(bound) >= 15

    for index, (key, where, what) in enumerate(bound):
        for other_key, other_where, other in bound[index + 1 :]:
            overlapping = where is other_where or where.isAncestorOf(other_where)
            overlapping = overlapping or other_where.isAncestorOf(where)
            assert key != other_key or not overlapping, (key, what, other)


def test_getting_started_names_only_menu_entries_the_window_has(
    qtbot: QtBot, gui: GuiSession
) -> None:
    assert "Getting started" in menus_of(gui)["Help"]
    gui.window.getting_started_action.trigger()
    dialogs = help_dialogs(gui)
    assert [dialog.windowTitle() for dialog in dialogs] == ["Getting started"]
    text = dialogs[0].text.toPlainText()
    for topic in (
        "Add a patient",
        "Drop or import a scan",
        "Analyse",
        "PRELIMINARY",
        "Approve or reject",
        "Schedule the follow-up",
        "The watch folder",
        "Notifications",
    ):
        assert topic in text, topic
    # The model loads by itself, as the status bar says ("loads on first analysis"): the
    # text had the clinician load it first.
    assert "loads by itself for the first analysis" in " ".join(text.split())
    assert "installed and loaded" not in text

    # Every "Menu ▸ Entry" it names is one the clinician finds: none left unchecked.
    named = re.findall(r"<b>([^<▸]+) ▸ ([^<▸]+)</b>", getting_started.TEXT)
    assert len(named) >= 10
    assert len(named) == getting_started.TEXT.count("▸"), "a menu path not in bold"
    menus = menus_of(gui)
    for menu, entry in named:
        assert entry in menus.get(menu, []), (menu, entry)
    # Shown, no path breaks between two lines ("File ▸" at one's end, "Import image…"
    # at the next's start).
    shown = gui.help.open_getting_started().text.document().toRawText()
    for menu, entry in named:
        assert f"{menu} ▸ {entry}".replace(" ", "\u00a0") in shown, (menu, entry)
    dialogs[0].close()


def test_help_dialogs_stay_readable_at_a_large_font(
    qtbot: QtBot, qapp: QApplication, make_gui: Maker
) -> None:
    before = QFont(qapp.font())
    large = QFont(before)
    large.setPointSizeF(before.pointSizeF() * 1.6)
    qapp.setFont(large)
    try:
        gui = make_gui()
        for action in (gui.window.shortcuts_action, gui.window.getting_started_action):
            action.trigger()
            dialog = help_dialogs(gui)[0]
            browser = dialog.text
            qtbot.waitExposed(dialog)
            assert browser.font().pointSizeF() >= large.pointSizeF() - 0.01
            metrics = browser.fontMetrics()
            # Room for a line of prose and a page of it, within the screen.
            screen = dialog.screen().availableGeometry()
            assert dialog.width() >= min(60 * metrics.averageCharWidth(), screen.width() * 0.8)
            assert dialog.height() >= min(20 * metrics.lineSpacing(), screen.height() * 0.8)
            assert dialog.frameGeometry().width() <= screen.width()
            # Nothing cut off at the side: the text wraps, it does not run past the edge.
            qtbot.waitUntil(lambda b=browser: b.document().size().width() > 0)
            assert not browser.horizontalScrollBar().isVisible()
            assert browser.document().size().width() <= browser.viewport().width() + 1
            dialog.close()
            qtbot.waitUntil(lambda: not help_dialogs(gui))
    finally:
        qapp.setFont(before)


def test_help_dialogs_read_over_a_day_do_not_pile_up_in_the_window(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Each dialog closed is deleted, as About's are: none stays a hidden child."""
    for cycle in range(CYCLES):
        action = gui.window.shortcuts_action if cycle % 2 else gui.window.getting_started_action
        action.trigger()
        action.trigger()  # opened twice: one dialog
        dialogs = help_dialogs(gui)
        assert len([dialog for dialog in dialogs if dialog.isVisible()]) == 1
        for dialog in dialogs:
            dialog.close()
    qtbot.waitUntil(lambda: not help_dialogs(gui))
    gui.window.getting_started_action.trigger()  # still opens
    assert len(help_dialogs(gui)) == 1
