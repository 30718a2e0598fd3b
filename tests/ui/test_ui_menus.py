"""Menus and shortcuts: the standard layout, Find, and About with versions."""

from __future__ import annotations

import re
from pathlib import Path

from PySide6.QtGui import QAction, QFontMetrics, QKeySequence, QShortcut, QTextCursor, QTextDocument
from PySide6.QtWidgets import QAbstractButton, QLabel, QMessageBox
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


def test_about_asked_again_while_open_is_the_same_box(qtbot: QtBot, make_gui: Maker) -> None:
    """Help ▸ About while its box was open opened a second one over it."""
    gui = make_gui()
    gui.window.about_action.trigger()
    first = gui.about_box
    gui.window.about_action.trigger()
    assert gui.about_box is first
    assert len([b for b in gui.window.findChildren(QMessageBox) if b.isVisible()]) == 1
    first.close()


def test_about_s_versions_stand_apart_from_their_names(qtbot: QtBot, make_gui: Maker) -> None:
    """The versions' table had no space between its columns: "transformers5.25.0"."""
    gui = make_gui()
    gui.window.about_action.trigger()
    assert gui.about_box is not None
    label = next(w for w in gui.about_box.findChildren(QLabel) if "<table" in w.text())
    document = QTextDocument()
    document.setDefaultFont(label.font())
    document.setHtml(label.text())
    cursor = QTextCursor(document)
    cursor.movePosition(QTextCursor.MoveOperation.End)
    while cursor.currentTable() is None:
        cursor.movePosition(QTextCursor.MoveOperation.PreviousBlock)
    table = cursor.currentTable()
    metrics = QFontMetrics(label.font())
    layout = document.documentLayout()
    gaps = []
    for row in range(table.rows()):
        name = table.cellAt(row, 0).firstCursorPosition().block()
        value = table.cellAt(row, 1).firstCursorPosition().block()
        name_ends = layout.blockBoundingRect(name).left() + metrics.horizontalAdvance(name.text())
        gaps.append(layout.blockBoundingRect(value).left() - name_ends)
    assert min(gaps) >= metrics.averageCharWidth(), gaps
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


README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def test_the_menu_entries_and_shortcuts_the_readme_names_exist(
    qtbot: QtBot, make_gui: Maker
) -> None:
    window = make_gui().window
    menus = {
        action.text().replace("&", ""): [
            entry.text().replace("&", "") for entry in action.menu().actions()
        ]
        for action in window.menuBar().actions()
    }
    # "AI → Model manager…", "Help → Open API docs opens", "AI ▸ Check model files again,"
    named = re.findall(
        r"\b(File|Edit|View|AI|Tools|Help) [→▸] (.+?)(?=\*\*|,| opens| to | \(|\)|$)",
        README,
        flags=re.MULTILINE,
    )
    assert len(named) >= 5
    for menu, entry in named:
        assert entry in menus[menu], (menu, entry)

    portable = QKeySequence.SequenceFormat.PortableText
    keys = {
        sequence.toString(portable)
        for action in window.findChildren(QAction)
        for sequence in action.shortcuts()
    }
    keys |= {shortcut.key().toString(portable) for shortcut in window.findChildren(QShortcut)}
    keys |= {
        button.shortcut().toString(portable) for button in window.findChildren(QAbstractButton)
    }
    # "Ctrl+N new patient, ..., Ctrl+, settings; Ctrl+Shift+A approves ..., Ctrl++, Ctrl+-"
    shortcuts = set(re.findall(r"Ctrl\+(?:Shift\+)?[A-Z0-9,+-]", README))
    assert len(shortcuts) >= 10
    for shortcut in shortcuts:
        assert QKeySequence(shortcut).toString(portable) in keys, shortcut
