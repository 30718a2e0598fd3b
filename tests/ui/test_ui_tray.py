"""The system tray: minimise-to-tray on close, its menu, critical notifications."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QSystemTrayIcon
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.records import Actor
from ophthai_desktop.ui import tray as tray_module
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.tray import TrayIcon
from tests.support.watch_folder import build_watch_app
from tests.ui.conftest import Maker

SYSTEM = Actor.system("test")


def test_closing_hides_to_the_tray_and_quit_quits(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui(tray=True, minimize_to_tray=True)
    assert isinstance(gui.tray, TrayIcon)
    quits: list[bool] = []
    gui.quit_requested.connect(lambda: quits.append(True))

    gui.window.close()
    assert not gui.window.isVisible()  # hidden, still running
    assert quits == []
    gui.tray.show_action.trigger()
    qtbot.waitUntil(gui.window.isVisible)

    gui.tray.quit_action.trigger()
    assert quits == [True]
    assert not gui.window.isVisible()


def test_without_minimise_to_tray_closing_quits(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui(tray=True, minimize_to_tray=False)
    quits: list[bool] = []
    gui.quit_requested.connect(lambda: quits.append(True))
    gui.window.close()
    assert quits == [True]


def test_without_a_tray_closing_quits(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui(tray=False, minimize_to_tray=True)
    quits: list[bool] = []
    gui.quit_requested.connect(lambda: quits.append(True))
    gui.window.close()
    assert quits == [True]


def test_critical_notifications_go_to_the_tray(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    gui = make_gui(tray=True)
    assert gui.tray is not None
    shown: list[tuple[str, str, str]] = []
    monkeypatch.setattr(
        gui.tray, "notify", lambda title, text, *, kind: shown.append((title, text, kind))
    )
    # The info one first: events arrive in order, so once the critical one has been
    # shown the info one has been handled (and must not have reached the tray).
    gui.application.notifications.create_notification("Routine", type="info", actor=SYSTEM)
    gui.application.notifications.create_notification(
        "Abnormal finding: AMD", type="critical", actor=SYSTEM
    )
    qtbot.waitUntil(lambda: len(shown) >= 1)
    assert shown == [("Critical finding", "Abnormal finding: AMD", "critical")]
    qtbot.waitUntil(lambda: gui.notifications_panel.model.rowCount() == 2)
    assert not gui.window.toast.isVisible()


def test_pause_is_offered_only_while_the_watch_folder_runs(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    off = make_gui(tray=True)
    assert off.tray is not None
    assert not off.tray.pause_action.isEnabled()
    assert off.window.status.watcher.text() == "Watch folder: off"

    application = build_watch_app(tmp_path / "watch", model_path=tmp_path / "none")
    on = make_gui(tray=True, application=application)
    assert on.tray is not None
    status = on.window.status.watcher
    qtbot.waitUntil(lambda: status.text() == "Watch folder: running")
    assert on.tray.pause_action.isEnabled()
    on.tray.pause_action.trigger()
    qtbot.waitUntil(lambda: status.text() == "Watch folder: paused")
    assert on.window.pause_watch_action.isChecked()  # the menu follows the tray
    on.tray.pause_action.trigger()
    qtbot.waitUntil(lambda: status.text() == "Watch folder: running")


def test_a_watch_folder_file_not_taken_in_is_a_tray_warning(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    application = build_watch_app(tmp_path / "watch", model_path=tmp_path / "none")
    gui = make_gui(application=application, tray=True)
    assert gui.tray is not None
    shown: list[tuple[str, str, str]] = []
    monkeypatch.setattr(
        gui.tray, "notify", lambda title, text, *, kind: shown.append((title, text, kind))
    )
    qtbot.waitUntil(
        lambda: gui.window.status.watcher.text() == "Watch folder: running", timeout=10_000
    )

    (application.watcher.folder / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")

    qtbot.waitUntil(lambda: len(shown) == 1, timeout=15_000)
    title, text, kind = shown[0]
    assert (title, kind) == ("Watch folder: a file was not taken in", "warning")
    assert text.startswith("scan.png: ")
    assert not gui.window.toast.isVisible()


def test_each_alert_kind_has_its_tray_icon(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    gui = make_gui(tray=True)
    assert gui.tray is not None
    shown: list[QSystemTrayIcon.MessageIcon] = []
    monkeypatch.setattr(
        gui.tray.icon, "showMessage", lambda _title, _text, kind, _ms: shown.append(kind)
    )

    for kind in ("info", "warning", "critical"):
        gui.tray.notify("Title", "Text", kind=kind)  # type: ignore[arg-type]

    icons = QSystemTrayIcon.MessageIcon
    assert shown == [icons.Information, icons.Warning, icons.Critical]
    with pytest.raises(KeyError):
        gui.tray.notify("Title", "Text", kind="critcal")  # type: ignore[arg-type]


def _a_tray_saying(
    make_gui: Maker, monkeypatch: pytest.MonkeyPatch, *, part: str
) -> tuple[GuiSession, list[str]]:
    """A window with a tray whose messages show for 200 ms, and the list of the
    ``part`` ("title" or "text") of each message the tray shows, as it shows them."""
    monkeypatch.setattr(tray_module, "MESSAGE_MS", 200, raising=False)
    gui = make_gui(tray=True)
    assert gui.tray is not None
    shown: list[str] = []

    def show(title: str, text: str, _icon: object, _ms: int) -> None:
        shown.append(title if part == "title" else text)

    monkeypatch.setattr(gui.tray.icon, "showMessage", show)
    return gui, shown


def test_a_routine_tray_message_waits_for_a_critical_one_to_go(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Qt's balloon (and Windows') shows one message: the watch folder's "a new scan" a
    moment after a critical finding replaced it, unread. It waits until the critical one's
    time is up (or it is clicked away), as in the toast; a more urgent one does not wait."""
    gui, shown = _a_tray_saying(make_gui, monkeypatch, part="title")

    gui.tray.notify("Critical finding", "Abnormal finding: CNV", kind="critical")
    gui.tray.notify("Watch folder: a new scan", "scan.png was filed", kind="info")
    assert shown == ["Critical finding"]
    qtbot.waitUntil(lambda: len(shown) == 2)
    assert shown[1] == "Watch folder: a new scan"

    gui.tray.notify("Watch folder: a file was not taken in", "bad.png", kind="warning")
    gui.tray.notify("Critical finding", "Abnormal finding: AMD", kind="critical")
    gui.tray.notify("Watch folder: 2 new scans", "a.png, b.png were filed", kind="info")
    assert shown[2:] == ["Watch folder: a file was not taken in", "Critical finding"]
    gui.tray.icon.messageClicked.emit()
    assert shown[4:] == ["Watch folder: 2 new scans"]


def test_a_critical_finding_s_tray_message_never_waits(
    qtbot: QtBot, make_gui: Maker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only a message less urgent than the one showing waits in the tray's queue, and a
    critical finding is the most urgent: a second one shows at once, and none is left
    waiting to show after its analysis is approved or rejected (the toast drops such
    messages; the tray never holds one). One on screen cannot be taken back: Qt has no
    way to."""
    gui, shown = _a_tray_saying(make_gui, monkeypatch, part="text")

    gui.tray.notify("Critical finding", "Abnormal finding: CNV", kind="critical")
    gui.tray.notify("Critical finding", "Abnormal finding: AMD", kind="critical")
    assert shown == ["Abnormal finding: CNV", "Abnormal finding: AMD"]
    gui.tray.notify("Watch folder: a new scan", "scan.png was filed", kind="info")
    qtbot.waitUntil(lambda: len(shown) == 3)
    assert shown[2] == "scan.png was filed"  # the only one that waited


def test_clicking_a_tray_message_shows_the_window(qtbot: QtBot, make_gui: Maker) -> None:
    """A click on the tray's message of a critical finding took the message away and
    left the window hidden in the tray: the clinician had to find the icon and click it
    too before reaching the notification and its patient."""
    gui = make_gui(tray=True, minimize_to_tray=True)
    assert gui.tray is not None
    gui.window.close()
    assert not gui.window.isVisible()
    gui.tray.notify("Critical finding", "Abnormal finding: CNV", kind="critical")

    gui.tray.icon.messageClicked.emit()  # as the desktop's notification service does

    qtbot.waitUntil(gui.window.isVisible)
