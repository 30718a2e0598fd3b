"""Keyboard, screen readers, large fonts and colour: a clinician who works without the
mouse, hears the window through a screen reader or reads it at a larger font size
reaches and understands everything the others do."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QMenu
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.ui.session import GuiSession
from tests.support.images import png_bytes
from tests.ui.conftest import open_patient

ACTOR = Actor("t", "gui")


# Keyboard ---------------------------------------------------------------------------------


def test_every_menu_entry_has_its_own_mnemonic(gui: GuiSession) -> None:
    """Alt+F, N opens New patient…: each entry of each menu has a letter of its own."""
    for top in gui.window.menuBar().actions():
        menu = top.menu()
        assert isinstance(menu, QMenu)
        letters = []
        for action in menu.actions():
            if action.isSeparator():
                continue
            text = action.text()
            assert "&" in text[:-1], f"{top.text()} ▸ {text} has no mnemonic"
            letters.append(text[text.index("&") + 1].lower())
        assert len(letters) == len(set(letters)), f"{top.text()}: {letters}"


def test_deleting_the_shown_patient_gives_the_keyboard_back_to_the_list(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """Delete… on the page, confirmed: the page's buttons go with the patient, and the
    focus was left on the empty page's hint, a label a keyboard or screen reader user
    can do nothing with."""
    patient = gui.application.patients.create_patient({"name": "Gone Soon"}, actor=ACTOR)
    open_patient(qtbot, gui, patient.id)
    window = gui.window
    window.activateWindow()
    gui.patient_page.delete.setFocus()
    qtbot.waitUntil(lambda: window.focusWidget() is gui.patient_page.delete)
    qtbot.keyClick(gui.patient_page.delete, Qt.Key.Key_Space)
    box = gui.patients.confirm
    assert box is not None
    qtbot.waitUntil(lambda: QApplication.activeWindow() is box)
    yes = box.property("yesButton")
    yes.setFocus()
    qtbot.keyClick(yes, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: gui.patient_page.patient is None)
    assert window.focusWidget() is gui.patient_list.table


def test_enter_on_the_job_queue_opens_the_jobs_patient_and_tab_leaves_it(
    qtbot: QtBot, gui: GuiSession
) -> None:
    """A double-click was the only way from a job to its patient; and Tab went from cell
    to cell of the queue (row after row) instead of on to Cancel."""
    app = gui.application
    patient = app.patients.create_patient(
        {"name": "Queued Keyed"}, actor=ACTOR, image=NewImage(png_bytes())
    )
    job = app.jobs.queue_patient_analysis(patient.id, actor=ACTOR)
    panel = gui.jobs_panel
    qtbot.waitUntil(lambda: panel.model.get(job.id) is not None)
    gui.window.activateWindow()
    assert panel.select_job(job.id)
    panel.table.setFocus()
    qtbot.waitUntil(panel.table.hasFocus)
    qtbot.keyClick(panel.table, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Queued Keyed")

    panel.table.setFocus()
    qtbot.waitUntil(panel.table.hasFocus)
    qtbot.keyClick(panel.table, Qt.Key.Key_Tab)
    assert not panel.table.hasFocus()
