"""Menus and shortcuts: the standard layout, Find, and About with versions."""

from __future__ import annotations

from PySide6.QtGui import QKeySequence
from pytestqt.qtbot import QtBot

from tests.support.scripted_engine import DME, ScriptedEngine
from tests.ui.conftest import Maker


def test_menus_and_standard_shortcuts(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui()
    window = gui.window
    titles = [action.text().replace("&", "") for action in window.menuBar().actions()]
    assert titles == ["File", "Edit", "View", "AI", "Tools", "Help"]
    assert window.new_patient_action.shortcut() == QKeySequence(QKeySequence.StandardKey.New)
    assert window.quit_action.shortcut() == QKeySequence(QKeySequence.StandardKey.Quit)
    assert window.find_action.shortcut() == QKeySequence(QKeySequence.StandardKey.Find)
    assert window.settings_action.shortcut() == QKeySequence("Ctrl+,")


def test_find_focuses_the_patient_search(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui()
    window = gui.window
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    window.patient_list.search.setText("Okafor")
    window.jobs_dock.setFocus()
    window.find_action.trigger()
    qtbot.waitUntil(lambda: window.patient_list.search.hasFocus())
    assert window.patient_list.search.selectedText() == "Okafor"


def test_about_lists_versions(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui()
    gui.window.about_action.trigger()
    assert gui.about_box is not None
    text = gui.about_box.text()
    for name in ("OphthAI Desktop", "Python", "Qt", "PySide6", "torch", "transformers"):
        assert name in text, name
    gui.about_box.close()


def test_about_says_which_model_is_loaded_and_which_is_configured(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """About named the configured model id as the one analysing, with no model installed
    and with a local folder configured (which wins over the id) alike."""
    gui = make_gui()  # a local folder with no model in it
    settings = gui.application.settings
    assert settings.model_path is not None
    gui.window.about_action.trigger()
    assert gui.about_box is not None
    text = gui.about_box.text()
    assert "Model loaded: none (not installed)" in text
    assert f"Model configured: {settings.model_path} (local folder)" in text
    assert settings.model_id not in text  # not what would be loaded, nor what is
    gui.about_box.close()

    ready = make_gui(engine=ScriptedEngine(DME))  # a model loaded from elsewhere
    ready.window.about_action.trigger()
    assert ready.about_box is not None
    text = ready.about_box.text()
    assert "Model loaded: scripted on cpu" in text
    assert f"Model configured: {ready.application.settings.model_path} (local folder)" in text
    ready.about_box.close()
