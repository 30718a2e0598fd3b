"""The settings dialog (saved, read back, applied), Tools > Open watch folder, and the
window's remembered geometry and splitters."""

from __future__ import annotations

import errno
import os
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QIcon, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QDialogButtonBox,
    QLineEdit,
    QSplitter,
    QStyle,
    QStyleOptionFrame,
)
from pytestqt.qtbot import QtBot

from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core import settings_file
from ophthai_desktop.core.errors import InvalidInput
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.core.watcher import WatcherState
from ophthai_desktop.ui.context import ApiState
from ophthai_desktop.ui.controllers import settings as settings_module
from ophthai_desktop.ui.controllers import watch_folder as watch_folder_module
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.theme import apply_theme
from ophthai_desktop.ui.views.reflow import set_side_by_side
from ophthai_desktop.ui.views.settings_dialog import SettingsDialog
from tests.conftest import make_settings
from tests.support.held_decode import held_at_decode
from tests.support.images import png_bytes
from tests.ui.conftest import Maker


@pytest.fixture(autouse=True)
def settings_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The user's settings file, in the test's folder."""
    path = tmp_path / "config" / "settings.env"
    monkeypatch.setattr(settings_module, "settings_file", lambda: path)
    return path


def _open(gui: GuiSession) -> SettingsDialog:
    gui.window.settings_action.trigger()
    dialog = gui.settings_controller.dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def _ok(dialog: SettingsDialog) -> None:
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()


def test_settings_are_saved_and_read_back(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, tmp_path: Path
) -> None:
    gui = make_gui()
    assert gui.window.settings_action.shortcut().toString() == "Ctrl+,"
    dialog = _open(gui)
    assert dialog.data_dir.isReadOnly()
    assert dialog.data_dir.text() == str(gui.application.settings.data_dir)
    assert dialog.user_name.text() == "Dr. Test"
    dialog.user_name.setText("Dr. Second")
    dialog.max_new_tokens.setValue(2048)
    dialog.thinking_budget.setValue(512)
    dialog.quantization.setCurrentText("4bit")
    dialog.device.setCurrentText("cuda:1")
    dialog.cors_origins.setText("http://localhost:4000, https://viewer.example.org")
    dialog.watch_folder_path.setText(str(tmp_path / 'watch "quoted" dir'))
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        _ok(dialog)
    qtbot.waitUntil(lambda: gui.settings_controller.dialog is None)

    assert settings_path.is_file()
    reread = Settings(_env_file=settings_path, data_dir=tmp_path / "elsewhere")  # type: ignore[call-arg]
    assert reread.user_name == "Dr. Second"
    assert reread.max_new_tokens == 2048
    assert reread.thinking_budget == 512
    assert reread.quantization == "4bit"
    assert reread.device == "cuda:1"
    assert reread.cors_origins == ["http://localhost:4000", "https://viewer.example.org"]
    assert reread.watch_folder_path == tmp_path / 'watch "quoted" dir'
    assert reread.model_path is None  # not changed in the dialog, so not written
    # Applied to the running application.
    assert gui.application.settings.max_new_tokens == 2048
    assert gui.context.actor.who == "Dr. Second"

    again = _open(gui)  # a new dialog shows what was saved
    assert again is not dialog
    assert again.user_name.text() == "Dr. Second"
    assert again.max_new_tokens.value() == 2048
    assert again.quantization.currentText() == "4bit"
    assert again.cors_origins.text() == "http://localhost:4000, https://viewer.example.org"
    assert str(settings_path) in again.saved_to.text()


def test_the_verdict_is_signed_with_the_new_name_after_it_changes(
    qtbot: QtBot, make_gui: Maker
) -> None:
    gui = make_gui()
    view = gui.analysis_view
    assert view.clinician.text() == "Dr. Test"
    dialog = _open(gui)
    dialog.user_name.setText("Dr. Second")
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        _ok(dialog)
    assert view.clinician.text() == "Dr. Second"  # as the audit trail will say
    view.clinician.setText("Dr. Typed In")  # a name typed in for one verdict stays
    dialog = _open(gui)
    dialog.user_name.setText("Dr. Third")
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        _ok(dialog)
    assert view.clinician.text() == "Dr. Typed In"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_the_settings_file_holding_the_api_token_is_private_to_its_owner(
    qtbot: QtBot, make_gui: Maker, settings_path: Path
) -> None:
    settings_path.parent.mkdir(parents=True)
    settings_path.write_text("# kept by hand\nSOMETHING_ELSE=1\n", encoding="utf-8")
    settings_path.chmod(0o644)  # as an older version, or a hand edit, left it
    gui = make_gui()
    dialog = _open(gui)
    token = "a-long-enough-token-0123456789abcdef"
    dialog.api_token.setText(token)
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        _ok(dialog)
    text = settings_path.read_text(encoding="utf-8")
    assert token in text and "SOMETHING_ELSE=1" in text
    assert stat.S_IMODE(settings_path.stat().st_mode) == 0o600


def test_invalid_settings_name_the_field_and_save_nothing(
    qtbot: QtBot, make_gui: Maker, settings_path: Path
) -> None:
    gui = make_gui()
    dialog = _open(gui)
    dialog.api_host.setText("0.0.0.0")  # the network, without a token
    _ok(dialog)
    assert dialog.error.isVisible()
    assert dialog.error.text().startswith("API token:")
    assert dialog.api_token.property("invalid") is True

    dialog.api_token.setText("too-short")
    _ok(dialog)
    assert "too short" in dialog.error.text()

    dialog.api_host.setText("127.0.0.1")
    dialog.device.setCurrentText("gpu")
    _ok(dialog)
    assert dialog.error.text().startswith("Device:")
    assert dialog.device.property("invalid") is True
    assert dialog.api_token.property("invalid") is False

    dialog.device.setCurrentText("auto")
    dialog.cors_origins.setText("localhost:3000")
    _ok(dialog)
    assert dialog.error.text().startswith("CORS origins:")
    assert dialog.isVisible()

    dialog.cors_origins.setText("")
    # Empty allows no browser page; the hint must not read as origins in effect.
    assert "http" not in dialog.cors_origins.placeholderText()
    a_file = gui.application.settings.data_dir / "not-a-folder.txt"
    a_file.write_text("x")
    dialog.watch_folder_enabled.setChecked(True)
    dialog.watch_folder_path.setText(str(a_file))
    _ok(dialog)
    qtbot.waitUntil(lambda: "is a file, not a folder" in dialog.error.text())
    assert dialog.watch_folder_path.property("invalid") is True
    assert dialog.isVisible()
    assert not settings_path.exists()
    assert gui.application.settings.api_host == "127.0.0.1"


def test_minimise_to_tray_applies_at_once(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui(tray=True, minimize_to_tray=True)
    quits: list[bool] = []
    gui.quit_requested.connect(lambda: quits.append(True))
    gui.window.close()
    assert quits == []  # hidden to the tray
    gui.show_window()

    dialog = _open(gui)
    assert dialog.minimize_to_tray.isChecked()
    dialog.minimize_to_tray.setChecked(False)
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        _ok(dialog)
    gui.window.close()
    assert quits == [True]


def test_without_a_tray_keep_running_in_it_is_off_with_the_reason(
    qtbot: QtBot, make_gui: Maker, settings_path: Path
) -> None:
    """Offscreen or a bare X server has no tray (alerts are toasts in the window): the
    box was shown ticked, though closing the window quits."""
    gui = make_gui(tray=False, minimize_to_tray=True)
    dialog = _open(gui)
    box = dialog.minimize_to_tray
    assert not box.isChecked() and not box.isEnabled()
    assert "no system tray" in box.toolTip()
    assert dialog.no_tray.isVisible() and "closing the window quits" in dialog.no_tray.text()
    # Shown off, not changed: OK saves nothing of it (a desktop with a tray keeps it).
    assert "minimize_to_tray" not in dialog.changed_values()

    quits: list[bool] = []
    gui.quit_requested.connect(lambda: quits.append(True))
    dialog.reject()
    gui.window.close()
    assert quits == [True]
    assert not settings_path.exists()


def test_with_a_tray_keep_running_in_it_is_offered(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui(tray=True, minimize_to_tray=True)
    dialog = _open(gui)
    assert dialog.minimize_to_tray.isChecked() and dialog.minimize_to_tray.isEnabled()
    assert dialog.no_tray.isHidden()


def test_turning_the_watch_folder_on_and_off(qtbot: QtBot, make_gui: Maker, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    gui = make_gui(watch_folder_enabled=False)
    watcher = gui.application.watcher
    assert watcher.state is WatcherState.STOPPED

    dialog = _open(gui)
    dialog.watch_folder_enabled.setChecked(True)
    dialog.watch_folder_path.setText(str(folder))
    with qtbot.waitSignal(gui.settings_controller.watcher_applied):
        _ok(dialog)
    assert watcher.state is WatcherState.RUNNING
    assert watcher.folder == folder.resolve()

    dialog = _open(gui)
    dialog.watch_folder_enabled.setChecked(False)
    with qtbot.waitSignal(gui.settings_controller.watcher_applied):
        _ok(dialog)
    assert watcher.state is WatcherState.STOPPED


def test_a_paused_watch_folder_stays_paused_after_a_restart_until_resumed(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, settings_path: Path
) -> None:
    """The trial: Pause, close, start again, and the folder was watched again with
    nothing said (the pause lived only in the running watcher)."""
    gui, folder = _watching_a_folder(qtbot, make_gui, tmp_path)
    gui.window.pause_watch_action.trigger()
    qtbot.waitUntil(lambda: gui.window.status.watcher.text() == "Watch folder: paused")
    qtbot.waitUntil(lambda: _file_says(settings_path, 'OPHTHAI_WATCH_FOLDER_PAUSED="true"'))
    gui.shutdown()
    scan = folder / "waiting.png"
    scan.write_bytes(png_bytes())

    # Started again, reading the settings file as the app does.
    settings = Settings(
        _env_file=settings_path,  # type: ignore[call-arg]
        data_dir=tmp_path / "gui0" / "data",
        api_enabled=False,
        model_path=tmp_path / "no-model-here",
        watch_folder_enabled=True,
        watch_folder_path=folder,
    )
    again = make_gui(application=build_application(settings))
    watcher = again.application.watcher
    qtbot.waitUntil(lambda: again.window.status.watcher.text() == "Watch folder: paused")
    assert again.window.pause_watch_action.isChecked()
    assert watcher.state is WatcherState.PAUSED
    assert scan.exists()  # waits in the folder, not taken in

    again.window.pause_watch_action.trigger()  # Resume
    qtbot.waitUntil(lambda: again.window.status.watcher.text().startswith("Watch folder: running"))
    qtbot.waitUntil(lambda: not scan.exists(), timeout=15_000)  # taken in now
    qtbot.waitUntil(lambda: 'OPHTHAI_WATCH_FOLDER_PAUSED="false"' in settings_path.read_text())


def test_a_pause_that_the_environment_overrides_at_the_next_start_is_said(
    qtbot: QtBot,
    make_gui: Maker,
    tmp_path: Path,
    settings_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OPHTHAI_WATCH_FOLDER_PAUSED set in the environment wins at the next start: Pause
    was saved and the next start watched the folder with only a log line said (the
    settings dialog says so of the settings it saves)."""
    monkeypatch.setenv("OPHTHAI_WATCH_FOLDER_PAUSED", "no")
    gui, _folder = _watching_a_folder(qtbot, make_gui, tmp_path)
    gui.window.pause_watch_action.trigger()
    qtbot.waitUntil(lambda: gui.window.status.watcher.text() == "Watch folder: paused")
    said = gui.window.banner.text()
    assert "OPHTHAI_WATCH_FOLDER_PAUSED is set in the environment" in said
    assert "after OphthAI starts again the watch folder is watched" in said
    qtbot.waitUntil(lambda: _file_says(settings_path, 'OPHTHAI_WATCH_FOLDER_PAUSED="true"'))


def test_a_pause_and_a_resume_clicked_at_once_are_saved_in_that_order(
    qtbot: QtBot,
    make_gui: Maker,
    tmp_path: Path,
    settings_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Pause then Resume at once: each was written on its own pool thread (two of them),
    so the Pause's write, held up (a slow disk, a share), could land after the
    Resume's: the file said paused while the folder was watched, and the next start
    was paused with nothing said. The first write here is held until a later one ends
    (or 2 s)."""
    gui, _folder = _watching_a_folder(qtbot, make_gui, tmp_path)
    real_write = settings_module.write_watch_folder_paused
    first_held = threading.Event()
    later_done = threading.Event()
    calls: list[bool] = []

    def write(path: Path, paused: bool) -> None:
        calls.append(paused)
        if len(calls) == 1:
            first_held.set()
            later_done.wait(2)
            real_write(path, paused)
        else:
            real_write(path, paused)
            later_done.set()

    monkeypatch.setattr(settings_module, "write_watch_folder_paused", write)
    action = gui.window.pause_watch_action
    action.trigger()  # Pause
    qtbot.waitUntil(first_held.is_set)
    action.trigger()  # Resume
    qtbot.waitUntil(lambda: gui.window.status.watcher.text().startswith("Watch folder: running"))

    qtbot.waitUntil(lambda: len(calls) == 2 and not gui.tasks.busy, timeout=10_000)
    assert 'OPHTHAI_WATCH_FOLDER_PAUSED="false"' in settings_path.read_text()
    assert gui.application.watcher.state is WatcherState.RUNNING


def test_a_pause_just_before_quitting_is_kept_though_the_pool_was_busy(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, settings_path: Path
) -> None:
    """Pause, then quit while the window's two pool threads are busy (a slow read):
    the Pause's write waited in the pool's queue, which quitting drops, and the next
    start watched the folder again with nothing said."""
    gui, _folder = _watching_a_folder(qtbot, make_gui, tmp_path)
    busy = threading.Event()
    for _ in range(2):
        gui.tasks.submit(lambda: busy.wait(10))
    gui.window.pause_watch_action.trigger()
    qtbot.waitUntil(lambda: gui.application.watcher.state is WatcherState.PAUSED)
    assert not settings_path.exists()  # its write waits behind the two

    threading.Timer(0.3, busy.set).start()  # they end while quitting waits for them
    gui.shutdown()

    assert 'OPHTHAI_WATCH_FOLDER_PAUSED="true"' in settings_path.read_text()


def test_a_settings_file_that_is_no_utf8_text_is_said_at_pause_and_does_not_break_quitting(
    qtbot: QtBot,
    make_gui: Maker,
    tmp_path: Path,
    settings_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The settings file saved in the system's code page while the window runs: Pause
    said the codec's words ("'utf-8' codec can't decode byte 0xe9 …"), and its write
    at quit, behind a busy pool, raised out of quitting."""
    gui, _folder = _watching_a_folder(qtbot, make_gui, tmp_path)
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    settings_path.write_bytes(b"# R\xe9glages du cabinet\n")
    gui.window.pause_watch_action.trigger()
    qtbot.waitUntil(lambda: "could not be saved" in gui.window.banner.text())
    assert "not UTF-8 text; save it as UTF-8" in gui.window.banner.text()

    busy = threading.Event()
    for _ in range(2):
        gui.tasks.submit(lambda: busy.wait(10))
    caplog.clear()
    gui.window.pause_watch_action.trigger()  # Resume: its write waits behind the two
    threading.Timer(0.3, busy.set).start()
    gui.shutdown()

    said = [r.getMessage() for r in caplog.records if "resume could not be saved" in r.getMessage()]
    assert said
    assert "not UTF-8 text; save it as UTF-8" in said[0]
    assert settings_path.read_bytes() == b"# R\xe9glages du cabinet\n"  # left as it was


def test_a_pause_not_saved_while_the_environment_sets_it_says_what_the_next_start_does(
    qtbot: QtBot,
    make_gui: Maker,
    tmp_path: Path,
    settings_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With OPHTHAI_WATCH_FOLDER_PAUSED set, a Pause whose write failed replaced the
    banner saying the environment wins with one saying the next start "follows the
    settings saved before" (it follows the environment), and wrapped the file's
    reason, brackets and all, in brackets."""
    monkeypatch.setenv("OPHTHAI_WATCH_FOLDER_PAUSED", "no")
    gui, _folder = _watching_a_folder(qtbot, make_gui, tmp_path)
    settings_path.parent.mkdir(parents=True, exist_ok=True)
    settings_path.write_bytes(b"# R\xe9glages du cabinet\n")
    gui.window.pause_watch_action.trigger()
    qtbot.waitUntil(lambda: "could not be saved" in gui.window.banner.text())

    said = gui.window.banner.text()
    assert "follows the settings saved before" not in said
    assert "After OphthAI starts again the watch folder is watched" in said
    assert "OPHTHAI_WATCH_FOLDER_PAUSED" in said
    assert f"could not be saved to {settings_path}: the file is not UTF-8 text" in said


def test_a_pause_while_the_dialog_s_settings_are_saved_stands(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, settings_path: Path
) -> None:
    """OK applied the settings as they were when it was pressed: a Pause (the tray's)
    made while the file was being written was undone, the watch folder restarted for
    the new interval unpaused, and the window forgot the pause the file kept (a Resume
    then wrote nothing, and the next start was paused)."""
    gui, _folder = _watching_a_folder(qtbot, make_gui, tmp_path)
    watcher = gui.application.watcher
    run_before = watcher._run
    saved: list[Settings] = []
    gui.settings_controller.settings_saved.connect(saved.append)
    dialog = _open(gui)
    dialog.watch_poll_seconds.setValue(2.5)  # restarts the watch folder once saved
    with settings_file._WRITING:  # the settings file's write held up (a slow disk)
        _ok(dialog)
        gui.window.pause_watch_action.trigger()  # Pause, as the tray's does
        qtbot.waitUntil(lambda: watcher.state is WatcherState.PAUSED)
    qtbot.waitUntil(lambda: bool(saved))
    qtbot.waitUntil(lambda: not gui.watch_folder.busy and not gui.tasks.busy)

    assert watcher._run is not None and watcher._run is not run_before  # restarted
    assert watcher.settings.watch_poll_seconds == 2.5
    assert watcher.state is WatcherState.PAUSED
    assert gui.window.status.watcher.text() == "Watch folder: paused"
    assert gui.application.settings.watch_folder_paused
    assert 'OPHTHAI_WATCH_FOLDER_PAUSED="true"' in settings_path.read_text()


def _file_says(path: Path, line: str) -> bool:
    """Whether the file at ``path`` is written and holds ``line`` (a write may be under way)."""
    return path.is_file() and line in path.read_text()


def _watching_a_folder(qtbot: QtBot, make_gui: Maker, tmp_path: Path) -> tuple[GuiSession, Path]:
    """A window whose watch folder (``incoming``, returned) is being watched."""
    folder = tmp_path / "incoming"
    folder.mkdir()
    gui = make_gui(watch_folder_enabled=True, watch_folder_path=folder)
    qtbot.waitUntil(lambda: not gui.watch_folder.busy)
    assert gui.application.watcher.state is WatcherState.RUNNING
    return gui, folder


def test_the_watch_folder_s_polling_is_set_in_the_dialog_and_restarts_it(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, tmp_path: Path
) -> None:
    """Polling (for a network share) and its interval could only be set in the file or
    the environment: set in the dialog, saved, and the running watch folder is watched
    again as they say, as for a new folder."""
    gui, _folder = _watching_a_folder(qtbot, make_gui, tmp_path)
    watcher = gui.application.watcher
    assert not watcher.status.polling

    dialog = _open(gui)
    assert not dialog.watch_use_polling.isChecked()
    assert dialog.watch_poll_seconds.value() == 1.0
    assert not dialog.watch_folder_require_mount.isChecked()
    dialog.watch_use_polling.setChecked(True)
    dialog.watch_poll_seconds.setValue(2.5)
    with qtbot.waitSignal(gui.settings_controller.watcher_applied):
        _ok(dialog)
    assert watcher.state is WatcherState.RUNNING
    assert watcher.status.polling
    assert _saved_names(settings_path) == {
        "OPHTHAI_WATCH_USE_POLLING",
        "OPHTHAI_WATCH_POLL_SECONDS",
    }
    reread = Settings(_env_file=settings_path, data_dir=tmp_path / "elsewhere")  # type: ignore[call-arg]
    assert (reread.watch_use_polling, reread.watch_poll_seconds) == (True, 2.5)

    run = watcher._run  # the running watch's observer polls at the interval saved
    assert run is not None and run.observer is not None
    assert run.observer.timeout == 2.5

    again = _open(gui)  # shows what was saved
    assert again.watch_use_polling.isChecked()
    assert again.watch_poll_seconds.value() == 2.5
    again.watch_poll_seconds.setValue(4.0)  # the interval alone restarts it too
    with qtbot.waitSignal(gui.settings_controller.watcher_applied):
        _ok(again)
    run = watcher._run
    assert run is not None and run.observer is not None
    assert run.observer.timeout == 4.0

    again = _open(gui)
    again.watch_use_polling.setChecked(False)
    with qtbot.waitSignal(gui.settings_controller.watcher_applied):
        _ok(again)
    assert watcher.state is WatcherState.RUNNING
    assert not watcher.status.polling


def test_watching_only_while_a_share_is_mounted_is_set_in_the_dialog(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, tmp_path: Path
) -> None:
    """OPHTHAI_WATCH_FOLDER_REQUIRE_MOUNT in the dialog: a folder that is not a mount
    point is then not watched (the error state, waiting for the share), and a missing
    one is refused in the dialog rather than created where the share would be mounted."""
    gui, folder = _watching_a_folder(qtbot, make_gui, tmp_path)
    watcher = gui.application.watcher

    dialog = _open(gui)
    dialog.watch_folder_require_mount.setChecked(True)
    dialog.watch_folder_path.setText(str(tmp_path / "nas"))  # no such folder
    _ok(dialog)
    qtbot.waitUntil(lambda: dialog.error.isVisible())
    assert dialog.error.text().startswith("Watch folder:")
    assert "does not exist" in dialog.error.text()
    assert dialog.watch_folder_path.property("invalid") is True
    assert not (tmp_path / "nas").exists()  # not made where a share would be mounted
    assert not settings_path.exists()

    dialog.watch_folder_path.setText("")  # the default folder: never a share's mount point
    _ok(dialog)
    qtbot.waitUntil(lambda: "mount point" in dialog.error.text())
    assert dialog.error.text().startswith("Watch folder:")
    assert not settings_path.exists()

    dialog.watch_folder_path.setText(str(folder))  # a folder, no share mounted on it
    with qtbot.waitSignal(gui.settings_controller.watcher_applied):
        _ok(dialog)
    assert _saved_names(settings_path) == {"OPHTHAI_WATCH_FOLDER_REQUIRE_MOUNT"}
    assert watcher.state is WatcherState.ERROR
    assert "not mounted" in watcher.status.message


def test_open_watch_folder(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    gui = make_gui(watch_folder_path=tmp_path / "scans-in")
    gui.window.open_watch_folder_action.trigger()
    qtbot.waitUntil(lambda: len(opened) == 1)
    assert [url.toLocalFile() for url in opened] == [str(tmp_path / "scans-in")]
    assert (tmp_path / "scans-in").is_dir()


def test_open_watch_folder_never_makes_the_data_folder(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default folder opened while the data folder is gone (moved, its disk
    unplugged): the data folder was made by the umask (0755, open to other accounts),
    where the app makes it 0700."""
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    (tmp_path / "db").mkdir()
    gui = make_gui(database_url=f"sqlite:///{tmp_path / 'db' / 'o.db'}")
    data = gui.application.settings.data_dir
    data.rename(tmp_path / "data moved away")
    gui.window.open_watch_folder_action.trigger()
    qtbot.waitUntil(
        lambda: "watch folder could not be created" in gui.window.banner.text(), timeout=10_000
    )
    assert not data.exists() and opened == []


def test_open_watch_folder_never_makes_a_share_s_mount_point(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The configured folder was made with its parents: with the share not mounted, a
    local folder at the mount point's path, watched while nobody copies into it."""
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    share = tmp_path / "mnt" / "nas"
    gui = make_gui(watch_folder_path=share / "oct")
    gui.window.open_watch_folder_action.trigger()
    qtbot.waitUntil(
        lambda: "watch folder could not be created" in gui.window.banner.text(), timeout=10_000
    )
    said = gui.window.banner.text()
    assert f"the folder {share} that should hold the watch folder cannot be found" in said
    assert "a network share not mounted" in said
    assert not (tmp_path / "mnt").exists() and opened == []


def test_open_watch_folder_does_not_wait_on_a_share_that_does_not_answer(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tools > Open watch folder created the folder on the GUI thread."""
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    folder = tmp_path / "share" / "scans-in"
    folder.parent.mkdir()  # the share, mounted
    release = threading.Event()
    safety = threading.Timer(5.0, release.set)  # the old code would wait here for ever
    real_mkdir = Path.mkdir

    def mkdir(path: Path, *args: Any, **kwargs: Any) -> None:
        if path == folder:
            release.wait(10)
        real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(settings_module, "CHECK_TIMEOUT_S", 0.3, raising=False)
    gui = make_gui(watch_folder_path=folder)
    safety.start()
    try:
        gui.window.open_watch_folder_action.trigger()
        assert not release.is_set(), "the GUI thread waited for the folder"
        qtbot.waitUntil(lambda: "did not answer within 0.3 s" in gui.window.banner.text())
        assert opened == []
    finally:
        release.set()
        safety.cancel()
    gui.window.banner.dismiss()
    gui.window.open_watch_folder_action.trigger()  # the share answers again
    qtbot.waitUntil(lambda: len(opened) == 1)
    assert folder.is_dir()


def test_dark_theme_applies_at_once(qtbot: QtBot, make_gui: Maker) -> None:
    gui = make_gui()
    app = QApplication.instance()
    assert isinstance(app, QApplication)
    try:
        dialog = _open(gui)
        dialog.theme.setCurrentText("dark")
        with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
            _ok(dialog)
        assert app.palette().color(QPalette.ColorRole.Window).lightness() < 80
        assert "#1e2226" in app.styleSheet()
        # The icons made in the light look are drawn again in a light ink.
        assert _ink(gui.window.analyse_action.icon()) > 180
        assert _ink(gui.analysis_view.analyse.icon()) > 180
        assert _ink(gui.patient_page.tabs.tabIcon(0)) > 180
    finally:
        apply_theme("light")
    assert app.palette().color(QPalette.ColorRole.Window).lightness() > 180
    assert _ink(gui.window.analyse_action.icon()) < 100


def test_a_disabled_icon_looks_disabled_in_the_dark_theme(qtbot: QtBot, make_gui: Maker) -> None:
    """Qt greys a disabled icon by itself, but the dark theme's light ink only a little: a
    zoom button at its limit looked as enabled as the one beside it."""
    gui = make_gui()
    try:
        apply_theme("dark")
        for button in (gui.scan_viewer.zoom_in_button, gui.jobs_panel.cancel):
            enabled = _ink(button.icon())
            disabled = _ink(button.icon(), QIcon.Mode.Disabled)
            assert enabled > 180 and disabled < enabled - 60, (button.objectName(), disabled)
    finally:
        apply_theme("light")


def _ink(icon: QIcon, mode: QIcon.Mode = QIcon.Mode.Normal) -> int:
    """The lightness of the darkest-drawn (most opaque) pixels of an icon."""
    image = icon.pixmap(24, 24, mode).toImage()
    strokes = [
        image.pixelColor(x, y)
        for x in range(image.width())
        for y in range(image.height())
        if image.pixelColor(x, y).alpha() > 200
    ]
    assert strokes, "the icon drew nothing"
    return round(sum(c.lightness() for c in strokes) / len(strokes))


def test_window_geometry_and_splitters_are_remembered(qtbot: QtBot, make_gui: Maker) -> None:
    first = make_gui()
    screen = first.window.screen().availableGeometry()
    width, height = min(1100, screen.width() - 40), min(760, screen.height() - 40)
    first.window.resize(width, height)
    split = first.window.findChild(QSplitter, "mainSplit")
    assert split is not None
    split.setSizes([300, width - 320])
    saved = split.sizes()
    first.shutdown()

    second = make_gui()
    assert (second.window.width(), second.window.height()) == (width, height)
    again = second.window.findChild(QSplitter, "mainSplit")
    assert again is not None
    assert again.sizes() == saved


def test_the_settings_dialog_fits_a_1024_pixel_screen(qtbot: QtBot) -> None:
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)

    assert dialog.sizeHint().width() <= 1000


def test_a_value_longer_than_its_field_shows_from_its_start(qtbot: QtBot, tmp_path: Path) -> None:
    """The default CORS list is wider than its field: it showed its end, starting in
    the middle of an origin ("0.1:3000, http://localhost:5173, ..."), and a long model
    folder its last characters, as if the value were damaged."""
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    settings = Settings(
        data_dir=tmp_path / "a data folder with a long name" / "for the clinic's workstation",
        model_path=tmp_path / "models" / "OctoMed-7B, the copy the clinic keeps locally",
        _env_file=None,  # type: ignore[call-arg]
    )
    dialog.set_settings(settings)
    dialog.show()
    qtbot.waitExposed(dialog)

    for field in (dialog.cors_origins, dialog.model_path, dialog.data_dir):
        metrics = field.fontMetrics()
        assert metrics.horizontalAdvance(field.text()) > field.width()  # does not fit
        assert field.cursorPosition() == 0, field.text()


def test_each_field_s_hint_fits_its_field(qtbot: QtBot, tmp_path: Path) -> None:
    """The model folder's "unset: use the model id" was cut to "unset: use the model…"
    at the dialog's width. (The watch folder's hint is its default path, as long as the
    data folder's.)"""
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    dialog.set_settings(Settings(data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]
    dialog.show()
    qtbot.waitExposed(dialog)

    hints = [
        field
        for field in dialog.fields.values()
        if isinstance(field, QLineEdit)
        and field.placeholderText()
        and field is not dialog.watch_folder_path
    ]
    assert dialog.model_path in hints
    for field in hints:
        # The room QLineEdit draws its text in: the style's contents rectangle less its
        # text margins and its own 2 px each side.
        option = QStyleOptionFrame()
        field.initStyleOption(option)
        contents = field.style().subElementRect(
            QStyle.SubElement.SE_LineEditContents, option, field
        )
        margins = field.textMargins()
        room = contents.width() - margins.left() - margins.right() - 4
        text = field.placeholderText()
        assert field.fontMetrics().horizontalAdvance(text) <= room, text


def _saved_names(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.split("=", 1)[0] for line in lines if "=" in line and not line.startswith("#")}


def test_only_the_settings_changed_are_saved(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, tmp_path: Path
) -> None:
    """Before, OK wrote every field: one the clinician never touched was frozen at the
    value it had then (a default, or what the environment or .env said), and a later
    .env or a new default no longer applied. What the file held stays."""
    settings_path.parent.mkdir(parents=True)
    settings_path.write_text('# by hand\nOPHTHAI_THINKING_BUDGET="512"\n', encoding="utf-8")
    gui = make_gui(max_pixels=100_000_000)  # above what the dialog's box goes to
    dialog = _open(gui)
    dialog.theme.setCurrentText("dark")
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        _ok(dialog)
    assert _saved_names(settings_path) == {"OPHTHAI_THINKING_BUDGET", "OPHTHAI_THEME"}
    assert gui.application.settings.max_pixels == 100_000_000  # not cut to the box's 50 M
    assert gui.application.settings.theme == "dark"

    # A .env in the working directory now decides what the file does not say.
    dotenv = tmp_path / ".env"
    dotenv.write_text("OPHTHAI_MAX_NEW_TOKENS=99\n", encoding="utf-8")
    reread = Settings(_env_file=(dotenv, settings_path), data_dir=tmp_path / "x")  # type: ignore[call-arg]
    assert (reread.max_new_tokens, reread.thinking_budget, reread.theme) == (99, 512, "dark")

    again = _open(gui)  # OK with nothing changed writes nothing
    before = settings_path.read_text(encoding="utf-8")
    _ok(again)
    qtbot.waitUntil(lambda: gui.settings_controller.dialog is None)
    assert settings_path.read_text(encoding="utf-8") == before


def test_a_change_the_environment_overrides_at_the_next_start_is_pointed_out(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Saved and applied now, but the environment wins over the settings file when the
    app starts again: said, rather than the change quietly undone at the next start."""
    monkeypatch.setenv("OPHTHAI_MAX_NEW_TOKENS", "512")
    gui = make_gui(max_new_tokens=512)
    dialog = _open(gui)
    dialog.max_new_tokens.setValue(2048)
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        _ok(dialog)
    assert gui.application.settings.max_new_tokens == 2048
    assert "OPHTHAI_MAX_NEW_TOKENS" in gui.window.banner.text()
    assert "environment" in gui.window.banner.text()


def test_a_model_folder_without_a_model_id_is_saved(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, tmp_path: Path
) -> None:
    """The dialog asks for "a model id or a model folder"; before, a folder with the id
    left empty was refused as "Model id: Input should be a valid string"."""
    gui = make_gui()
    dialog = _open(gui)
    dialog.model_id.setText("")
    dialog.model_path.setText(str(tmp_path / "my-octomed"))
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        _ok(dialog)
    assert gui.application.settings.model_path == tmp_path / "my-octomed"
    assert _saved_names(settings_path) == {"OPHTHAI_MODEL_PATH"}

    dialog = _open(gui)
    dialog.model_id.setText("")
    dialog.model_path.setText("")
    _ok(dialog)
    assert dialog.error.text().startswith("Model id:")
    assert "give a model id or a model folder" in dialog.error.text()


def _text_room(field: QLineEdit) -> int:
    """The room QLineEdit draws its text in: the style's contents rectangle less its
    text margins and its own 2 px each side."""
    option = QStyleOptionFrame()
    field.initStyleOption(option)
    contents = field.style().subElementRect(QStyle.SubElement.SE_LineEditContents, option, field)
    margins = field.textMargins()
    return contents.width() - margins.left() - margins.right() - 4


def test_the_folders_read_whole_or_by_their_ends_at_1024_by_768(qtbot: QtBot) -> None:
    """At 1024 x 768 the folder fields stood beside their labels, 190 px wide: the watch
    folder's default read "/home/clinician/.local/shar…", cut before the folder it
    names. They now take the group's width under their labels, and a default still too
    long is cut in its middle, its end (the folder) shown; the tooltip has it whole."""
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    data_dir = Path("/home/clinician/.local/share/OphthAI")
    dialog.set_settings(Settings(data_dir=data_dir, _env_file=None))  # type: ignore[call-arg]
    dialog.show()
    qtbot.waitExposed(dialog)
    # As it opens on a 1024 x 768 screen (offscreen's is 800 px wide: one column).
    set_side_by_side(dialog.columns, True)
    dialog.resize(846, dialog.sizeHint().height())
    qtbot.waitUntil(lambda: dialog.width() == 846)

    data = dialog.data_dir
    assert data.fontMetrics().horizontalAdvance(data.text()) <= _text_room(data)
    watch = dialog.watch_folder_path
    hint = watch.placeholderText()
    assert hint.endswith("/incoming_scans")  # the folder it names
    assert hint.startswith("/home/")
    assert watch.fontMetrics().horizontalAdvance(hint) <= _text_room(watch), hint
    assert watch.toolTip() == f"Default: {data_dir / 'incoming_scans'}"

    dialog.resize(1400, dialog.height())  # room for it: shown whole
    qtbot.waitUntil(lambda: watch.placeholderText() == str(data_dir / "incoming_scans"))


def test_a_path_cut_short_in_its_field_is_whole_in_its_tooltip(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """The watch folder's hint (its default path) was always too long for the dialog's
    898 px and cut short ("/tmp/ophthai-shot-yy…"), and nothing showed it whole; the
    data folder's path likewise."""
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    data_dir = tmp_path / "OphthAI Desktop data" / "for the clinic's workstation"
    dialog.set_settings(Settings(data_dir=data_dir, _env_file=None))  # type: ignore[call-arg]
    dialog.resize(898, dialog.sizeHint().height())
    dialog.show()
    qtbot.waitExposed(dialog)

    watch = dialog.watch_folder_path
    default = str(data_dir / "incoming_scans")
    assert watch.text() == "" and watch.default_path == default
    assert watch.fontMetrics().horizontalAdvance(default) > watch.width()  # cut short
    assert watch.toolTip() == f"Default: {default}"
    assert dialog.data_dir.toolTip() == str(data_dir)

    chosen = str(tmp_path / "a watch folder the scanner writes into, on the clinic's share")
    watch.setText(chosen)  # typed or chosen with Browse…
    assert watch.toolTip() == chosen
    watch.clear()
    assert watch.toolTip() == f"Default: {default}"
    dialog.model_path.setText(str(tmp_path / "models" / "OctoMed-7B"))
    assert dialog.model_path.toolTip() == str(tmp_path / "models" / "OctoMed-7B")


def test_a_watch_folder_that_cannot_be_created_is_refused_in_the_dialog(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, tmp_path: Path
) -> None:
    """It was saved, and the status bar only said "Watch folder: error" (the reason in
    the log): the clinician hears why in the dialog, and keeps the folder watched."""
    a_file = tmp_path / "a-file.txt"
    a_file.write_text("x")
    gui = make_gui(watch_folder_enabled=True, watch_folder_path=tmp_path / "incoming")
    watched = gui.application.settings.watch_folder_path
    dialog = _open(gui)
    dialog.watch_folder_path.setText(str(a_file / "scans"))  # under a file: never a folder
    _ok(dialog)
    qtbot.waitUntil(lambda: dialog.error.isVisible())
    assert dialog.isVisible()
    assert dialog.error.text().startswith("Watch folder:")
    assert "cannot be created" in dialog.error.text()
    assert dialog.watch_folder_path.property("invalid") is True
    assert dialog.watch_folder_path.text() == str(a_file / "scans")  # kept, to correct
    assert not settings_path.exists()
    assert gui.application.settings.watch_folder_path == watched


def test_a_watch_folder_on_a_share_not_mounted_is_refused_in_the_dialog(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, tmp_path: Path
) -> None:
    """The check made the folder with its parents: with the share not mounted, the
    settings were saved with a local folder at its mount point, watched while the device
    wrote to the share."""
    share = tmp_path / "mnt" / "nas"
    gui = make_gui(watch_folder_enabled=False)
    dialog = _open(gui)
    dialog.watch_folder_enabled.setChecked(True)
    dialog.watch_folder_path.setText(str(share / "oct"))
    _ok(dialog)
    controller = gui.settings_controller
    qtbot.waitUntil(lambda: controller.dialog is None or dialog.error.isVisible())
    assert controller.dialog is not None, "saved, with a folder made at the mount point"
    said = dialog.error.text()
    assert said.startswith("Watch folder:")
    assert f"the folder {share} that should hold the watch folder cannot be found" in said
    assert "a network share not mounted" in said
    assert not (tmp_path / "mnt").exists() and not settings_path.exists()
    assert dialog.isVisible()

    share.mkdir(parents=True)  # the share is mounted: its folder is made in it
    with qtbot.waitSignal(gui.settings_controller.settings_saved):
        _ok(dialog)
    assert (share / "oct").is_dir()


def test_turning_the_default_watch_folder_on_never_makes_the_data_folder(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, tmp_path: Path
) -> None:
    """The dialog's check made the default folder with the folders above it: a data
    folder gone meanwhile (moved, its disk unplugged) was made by the umask (0755, open
    to other accounts), where the app makes it 0700."""
    (tmp_path / "db").mkdir()
    gui = make_gui(watch_folder_enabled=False, database_url=f"sqlite:///{tmp_path / 'db' / 'o.db'}")
    data = gui.application.settings.data_dir
    data.rename(tmp_path / "data moved away")
    dialog = _open(gui)
    dialog.watch_folder_enabled.setChecked(True)
    _ok(dialog)
    qtbot.waitUntil(lambda: data.exists() or dialog.error.isVisible())
    assert not data.exists(), "the check made the data folder"
    assert "cannot be created" in dialog.error.text()
    assert not settings_path.exists()


@pytest.mark.skipif(
    sys.platform == "win32" or getattr(os, "geteuid", lambda: 0)() == 0,
    reason="permission bits do not stop Windows' ACLs or root",
)
def test_a_watch_folder_that_cannot_be_written_is_refused_in_the_dialog(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, tmp_path: Path
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        gui = make_gui(watch_folder_enabled=True)
        dialog = _open(gui)
        dialog.watch_folder_path.setText(str(locked))
        _ok(dialog)
        qtbot.waitUntil(lambda: dialog.error.isVisible())
        assert dialog.isVisible()
        assert "cannot write" in dialog.error.text()
        assert not settings_path.exists()
    finally:
        locked.chmod(0o700)


def test_a_change_that_waits_for_a_restart_is_said_when_it_is_saved(
    qtbot: QtBot, make_gui: Maker, settings_path: Path
) -> None:
    """The dialog's "(restart needed)" is gone once it closes: the window says that the
    API server runs as it was until it is restarted, and how."""
    gui = make_gui()
    dialog = _open(gui)
    dialog.api_port.setValue(8123)
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        _ok(dialog)
    assert "OPHTHAI_API_PORT" in settings_path.read_text()
    text = gui.window.banner.text()
    assert "API port" in text
    assert "Tools" in text and "API server" in text

    # A change that applies at once says nothing.
    gui.window.banner.dismiss()
    dialog = _open(gui)
    dialog.user_name.setText("Dr. Third")
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        _ok(dialog)
    assert gui.window.banner.text() == ""


# OK's checks off the GUI thread, and a save that is all or nothing ----------------------


def _blocking_folder_check(monkeypatch: pytest.MonkeyPatch, release: threading.Event) -> list[Path]:
    """The watch folder's check waits for ``release`` first, as on a share that does not
    answer; returns the folders each check asked about."""
    asked: list[Path] = []
    real = settings_module.check_watch_folder

    def blocking(folder: Path, **options: Any) -> list[Path]:
        asked.append(folder)
        release.wait(10)
        return real(folder, **options)

    monkeypatch.setattr(settings_module, "check_watch_folder", blocking)
    return asked


def test_a_watch_folder_that_does_not_answer_leaves_the_window_responsive(
    qtbot: QtBot,
    make_gui: Maker,
    settings_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check and the creation of the folder ran on the GUI thread: a share that did
    not answer froze the whole window inside the dialog."""
    release = threading.Event()
    safety = threading.Timer(5.0, release.set)  # the old code would wait here for ever
    asked = _blocking_folder_check(monkeypatch, release)
    folder = tmp_path / "share" / "incoming"
    folder.parent.mkdir()  # the share, mounted
    gui = make_gui(watch_folder_enabled=False)
    dialog = _open(gui)
    dialog.watch_folder_enabled.setChecked(True)
    dialog.watch_folder_path.setText(str(folder))
    ticks: list[int] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    safety.start()
    try:
        _ok(dialog)
        assert not release.is_set(), "OK waited on the GUI thread for the folder"
        qtbot.waitUntil(lambda: asked == [folder])
        assert dialog.checking.isVisible()
        assert dialog.checking.text() == "Checking the folder…"
        assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
        qtbot.wait(200)
        assert len(ticks) >= 5  # the GUI thread kept handling its events
        assert dialog.isVisible() and not settings_path.exists()
    finally:
        timer.stop()
        release.set()
        safety.cancel()
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        pass
    qtbot.waitUntil(lambda: gui.settings_controller.dialog is None)
    assert folder.is_dir()
    assert "OPHTHAI_WATCH_FOLDER_PATH" in settings_path.read_text(encoding="utf-8")


def test_a_check_that_does_not_answer_in_time_is_said_and_loses_nothing(
    qtbot: QtBot,
    make_gui: Maker,
    settings_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    safety = threading.Timer(5.0, release.set)
    _blocking_folder_check(monkeypatch, release)
    monkeypatch.setattr(settings_module, "CHECK_TIMEOUT_S", 0.3, raising=False)
    folder = tmp_path / "share" / "incoming"
    folder.parent.mkdir()  # the share, mounted
    gui = make_gui(watch_folder_enabled=False)
    dialog = _open(gui)
    dialog.watch_folder_enabled.setChecked(True)
    dialog.watch_folder_path.setText(str(folder))
    dialog.user_name.setText("Dr. Waiting")
    safety.start()
    try:
        _ok(dialog)
        qtbot.waitUntil(lambda: "did not answer within 0.3 s" in dialog.error.text())
        assert not release.is_set()
    finally:
        release.set()
        safety.cancel()
    assert dialog.error.text().startswith("Watch folder:")
    assert "nothing was saved" in dialog.error.text()
    assert dialog.isVisible() and not dialog.checking.isVisible()
    assert dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
    assert dialog.watch_folder_path.text() == str(folder)  # what was typed is kept
    assert dialog.user_name.text() == "Dr. Waiting"
    assert not settings_path.exists()
    assert gui.application.settings.user_name == "Dr. Test"
    # The check answers late: the folder it made for settings never saved goes again.
    qtbot.waitUntil(lambda: not folder.exists())
    assert folder.parent.is_dir()


def test_closing_the_dialog_while_its_check_runs(
    qtbot: QtBot,
    make_gui: Maker,
    settings_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = threading.Event()
    safety = threading.Timer(5.0, release.set)
    asked = _blocking_folder_check(monkeypatch, release)
    folder = tmp_path / "incoming"
    gui = make_gui(watch_folder_enabled=False)
    dialog = _open(gui)
    dialog.watch_folder_enabled.setChecked(True)
    dialog.watch_folder_path.setText(str(folder))
    safety.start()
    try:
        _ok(dialog)
        assert not release.is_set()
        qtbot.waitUntil(lambda: asked == [folder])
        dialog.buttons.button(QDialogButtonBox.StandardButton.Cancel).click()
        qtbot.waitUntil(lambda: gui.settings_controller.dialog is None)
    finally:
        release.set()
        safety.cancel()
    qtbot.waitUntil(lambda: not gui.context.tasks.busy)
    qtbot.waitUntil(lambda: not folder.exists())  # made by the check, then removed
    assert not settings_path.exists()
    assert not gui.application.settings.watch_folder_enabled
    again = _open(gui)  # the window goes on
    assert not again.watch_folder_enabled.isChecked()


def test_the_watch_folder_is_not_left_created_when_the_settings_cannot_be_saved(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The folder was created by the check, then the settings file could not be written:
    a folder of settings that were never saved."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setattr(settings_module, "settings_file", lambda: blocker / "settings.env")
    folder = tmp_path / "new" / "incoming"
    folder.parent.mkdir()
    gui = make_gui(watch_folder_enabled=False)
    dialog = _open(gui)
    dialog.watch_folder_enabled.setChecked(True)
    dialog.watch_folder_path.setText(str(folder))
    _ok(dialog)
    qtbot.waitUntil(lambda: "could not be saved" in dialog.error.text())
    assert dialog.isVisible()
    assert not folder.exists() and folder.parent.is_dir()
    assert not gui.application.settings.watch_folder_enabled


def test_settings_saved_to_a_full_disk_say_so_and_keep_the_file_before(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_path.parent.mkdir(parents=True)
    before = '# kept by hand\nOPHTHAI_USER_NAME="Dr. Before"\n'
    settings_path.write_text(before, encoding="utf-8")
    gui = make_gui()
    dialog = _open(gui)
    dialog.user_name.setText("Dr. After")

    def no_room(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_room)  # the data did not fit on the disk
    _ok(dialog)
    qtbot.waitUntil(lambda: "disk is full" in dialog.error.text())
    assert "settings saved before are kept" in dialog.error.text()
    assert dialog.isVisible() and gui.application.settings.user_name != "Dr. After"
    assert settings_path.read_text(encoding="utf-8") == before
    assert sorted(p.name for p in settings_path.parent.iterdir()) == [settings_path.name]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX symbolic links")
def test_a_link_beside_the_settings_file_is_not_written_through(
    qtbot: QtBot, make_gui: Maker, settings_path: Path, tmp_path: Path
) -> None:
    """Another program's file linked where an older version staged the settings."""
    settings_path.parent.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched", encoding="utf-8")
    victim.chmod(0o644)
    for staged in (".env.tmp", ".tmp"):
        settings_path.with_suffix(staged).symlink_to(victim)
    gui = make_gui()
    dialog = _open(gui)
    dialog.user_name.setText("Dr. After")
    with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
        _ok(dialog)
    assert victim.read_text(encoding="utf-8") == "untouched"
    assert "Dr. After" in settings_path.read_text(encoding="utf-8")
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644  # not made the settings' 0600


def test_an_api_port_in_use_is_said_when_it_is_saved(
    qtbot: QtBot, make_gui: Maker, settings_path: Path
) -> None:
    """It was only found when the server restarted ("is the port in use?")."""
    with socket.socket() as taken, socket.socket() as own:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        own.bind(("127.0.0.1", 0))
        own.listen()
        taken_port, own_port = taken.getsockname()[1], own.getsockname()[1]
        gui = make_gui(api_enabled=True)
        gui.report_api_state(ApiState(enabled=True, url=f"http://127.0.0.1:{own_port}"))

        dialog = _open(gui)
        dialog.api_port.setValue(taken_port)
        _ok(dialog)
        qtbot.waitUntil(lambda: dialog.error.isVisible())
        assert dialog.error.text().startswith(f"API port: port {taken_port} is already in use")
        assert dialog.api_port.property("invalid") is True
        assert dialog.isVisible() and not settings_path.exists()

        # The running server's own port is its own, free again when it restarts.
        dialog.api_port.setValue(own_port)
        with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
            _ok(dialog)
    assert gui.application.settings.api_port == own_port


def test_the_dialog_opens_with_the_focus_on_a_field_the_clinician_can_change(
    qtbot: QtBot, make_gui: Maker
) -> None:
    """It opened on the read-only data folder."""
    gui = make_gui()
    dialog = _open(gui)
    qtbot.waitExposed(dialog)
    qtbot.waitUntil(lambda: dialog.focusWidget() is not None)
    focused = dialog.focusWidget()
    assert focused is dialog.watch_folder_enabled  # the first in the keyboard's order
    assert not (isinstance(focused, QLineEdit) and focused.isReadOnly())


def test_a_refused_port_removes_the_folder_checked_with_it(tmp_path: Path) -> None:
    """Nothing is saved when the port is refused, so the folder made for it goes."""
    folder = tmp_path / "new" / "incoming"
    folder.parent.mkdir()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        checks = settings_module.SaveChecks(
            folder=folder, address=("127.0.0.1", taken.getsockname()[1])
        )
        with pytest.raises(InvalidInput, match="already in use"):
            settings_module.run_checks(checks)
    assert not folder.exists() and folder.parent.is_dir()


def _hanging_watcher(
    watcher: Any, release: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Make ``watcher.stop()`` and ``watcher.start()`` wait for ``release``, as on a
    network share that does not answer; returns the calls made, as they begin."""
    calls: list[str] = []
    real_stop, real_start = watcher.stop, watcher.start

    def stop(*args: Any, **kwargs: Any) -> None:
        calls.append("stop")
        release.wait(10)
        real_stop(*args, **kwargs)

    def start(*args: Any, **kwargs: Any) -> Any:
        calls.append("start")
        release.wait(10)
        return real_start(*args, **kwargs)

    monkeypatch.setattr(watcher, "stop", stop)
    monkeypatch.setattr(watcher, "start", start)
    return calls


def _settle_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "watch-folder-settle" and t.is_alive()]


def test_a_watch_folder_that_does_not_answer_holds_no_pool_thread(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher was stopped and started again on the slow task pool: a share that did
    not answer held its threads, the other slow tasks waited behind it, and the status
    bar said nothing."""
    monkeypatch.setattr(watch_folder_module, "NOT_ANSWERING_AFTER_S", 0.3)
    first, second = tmp_path / "share-a" / "incoming", tmp_path / "share-b" / "incoming"
    for share in (first, second):
        share.mkdir(parents=True)  # a configured watch folder is not made by the watcher
    gui = make_gui(watch_folder_enabled=False)
    watcher = gui.application.watcher
    release = threading.Event()
    safety = threading.Timer(8.0, release.set)  # the old code would wait here for ever
    calls = _hanging_watcher(watcher, release, monkeypatch)
    controller = gui.settings_controller
    status = gui.window.status
    safety.start()
    try:
        controller.apply(
            settings_module.validate(
                gui.application.settings,
                {"watch_folder_enabled": True, "watch_folder_path": first},
            )
        )
        qtbot.waitUntil(lambda: calls == ["stop"])
        controller.apply(
            settings_module.validate(gui.application.settings, {"watch_folder_path": second})
        )
        ran: list[int] = []
        gui.context.slow_tasks.submit(lambda: 1, ran.append)
        qtbot.waitUntil(lambda: ran == [1], timeout=3000)
        qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: does not answer")
        assert str(first) in status.watcher.toolTip()
        assert "did not answer within 0.3 s" in status.watcher.toolTip()
        assert not gui.window.pause_watch_action.isEnabled()
        assert calls == ["stop"]  # no second call piled up behind the first
        assert not release.is_set()
    finally:
        release.set()
        safety.cancel()
    # The call answers late: the watch folder ends up as the newest settings say.
    qtbot.waitUntil(lambda: status.watcher.text() == "Watch folder: running")
    qtbot.waitUntil(lambda: not gui.watch_folder.busy)
    assert watcher.state is WatcherState.RUNNING
    assert watcher.folder == second.resolve()
    assert str(second) in status.watcher.toolTip()
    assert len(_settle_threads()) == 1
    assert gui.window.pause_watch_action.isEnabled()


def test_pausing_while_the_watch_folder_does_not_answer_is_done_once_it_does(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pause ran watcher.pause() on the short task pool, where it waited behind the
    hung call (the watcher's control lock) and held one of its two threads."""
    monkeypatch.setattr(watch_folder_module, "NOT_ANSWERING_AFTER_S", 0.3)
    folder = tmp_path / "incoming"
    folder.mkdir()  # a configured watch folder is not made by the watcher
    gui = make_gui(watch_folder_enabled=True, watch_folder_path=folder)
    watcher = gui.application.watcher
    qtbot.waitUntil(lambda: watcher.state is WatcherState.RUNNING)
    qtbot.waitUntil(lambda: gui.window.pause_watch_action.isEnabled())
    release = threading.Event()
    safety = threading.Timer(8.0, release.set)
    real_pause = watcher.pause
    paused: list[int] = []

    def pause() -> None:
        paused.append(1)
        release.wait(10)
        real_pause()

    monkeypatch.setattr(watcher, "pause", pause)
    safety.start()
    try:
        gui.window.pause_watch_action.trigger()
        qtbot.waitUntil(lambda: paused == [1])
        gui.window.pause_watch_action.setEnabled(True)  # the status bar has not said yet
        gui.window.pause_watch_action.trigger()  # resume
        gui.window.pause_watch_action.trigger()  # pause again
        ran: list[int] = []
        for _ in range(2):
            gui.context.tasks.submit(lambda: 1, ran.append)
        qtbot.waitUntil(lambda: ran == [1, 1], timeout=3000)
        assert paused == [1]
    finally:
        release.set()
        safety.cancel()
    qtbot.waitUntil(lambda: not gui.watch_folder.busy)
    assert watcher.state is WatcherState.PAUSED
    qtbot.waitUntil(lambda: gui.window.status.watcher.text() == "Watch folder: paused")


def test_closing_the_window_does_not_wait_for_a_watch_folder_that_does_not_answer(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Quitting waited for the slow task pool's hung restart (15 s), and the watcher's
    stop then waited for it for good."""
    from ophthai_desktop.desktop import Desktop
    from tests.conftest import make_settings

    monkeypatch.setattr(watch_folder_module, "NOT_ANSWERING_AFTER_S", 0.3)
    settings = make_settings(tmp_path / "data", api_enabled=False, model_path=tmp_path / "none")
    desktop = Desktop(settings, tray=False)
    desktop.start()
    gui = desktop.session
    watcher = desktop.application.watcher
    release = threading.Event()
    safety = threading.Timer(8.0, release.set)
    calls = _hanging_watcher(watcher, release, monkeypatch)
    safety.start()
    try:
        gui.settings_controller.apply(
            settings_module.validate(
                desktop.application.settings,
                {"watch_folder_enabled": True, "watch_folder_path": tmp_path / "incoming"},
            )
        )
        qtbot.waitUntil(lambda: calls == ["stop"])
        started = time.monotonic()
        desktop.shutdown()
        # Not the hung stop's 8 s; a loaded machine takes near half a second to shut down.
        assert time.monotonic() - started < 5.0
        assert not release.is_set()
    finally:
        release.set()
        safety.cancel()
    # The call answers after the window closed: nothing is left running behind it.
    qtbot.waitUntil(lambda: "start" in calls and not _settle_threads())
    qtbot.waitUntil(lambda: watcher.state is WatcherState.STOPPED)


def test_without_a_user_name_anywhere_the_audit_name_falls_back_on_windows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Windows has no ``pwd`` module: ``getpass.getuser`` raises ImportError there when
    no user variable is set (a service, a scrubbed environment); the window still
    starts, signing as ``clinician``."""
    from ophthai_desktop.ui.context import clinician_name

    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "pwd", None)  # `import pwd` fails, as on Windows

    assert clinician_name(None) == "clinician"
    assert clinician_name(" Dr. Set ") == "Dr. Set"


def test_the_memory_estimate_follows_a_save_while_the_engine_is_busy(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save of a larger image budget and token cap while a load runs (a minute with
    the real model): the engine takes the new settings only once the load is over, and
    the model manager went on estimating with the old caps meanwhile."""
    from ophthai_desktop.core.inference import engine as engine_module
    from ophthai_desktop.core.units import format_bytes

    loading, release = threading.Event(), threading.Event()
    real_load_processor = engine_module.load_processor

    def held_load_processor(folder: Path, model_type: str | None) -> Any:
        loading.set()
        release.wait(30)
        return real_load_processor(folder, model_type)

    monkeypatch.setattr(engine_module, "load_processor", held_load_processor)
    gui = make_gui(model_path=tiny_checkpoint, device="cpu")
    gui.window.model_manager_action.trigger()
    manager = gui.model_manager.dialog
    assert manager is not None
    qtbot.waitUntil(lambda: gui.model_manager.preview is not None, timeout=60_000)
    before = gui.model_manager.preview
    assert before is not None and before.estimated_bytes is not None
    manager.load_button.click()
    try:
        assert loading.wait(30)
        dialog = _open(gui)
        dialog.max_pixels.setValue(4_000_000)
        dialog.max_new_tokens.setValue(8192)
        with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
            _ok(dialog)
        qtbot.waitUntil(lambda: gui.model_manager.preview is not before)
        qtbot.waitUntil(lambda: not gui.slow_tasks.busy)
        after = gui.model_manager.preview
        assert after is not None and after.estimated_bytes is not None
        assert after.estimated_bytes > before.estimated_bytes
        assert manager.estimate.text().startswith(f"about {format_bytes(after.estimated_bytes)}")
        assert manager.max_pixels.text().startswith("4,000,000")
    finally:
        release.set()
    qtbot.waitUntil(lambda: manager.state.text() == "Ready", timeout=60_000)
    gui.application.engine.unload()


def test_settings_saved_during_an_analysis_hold_no_pool_thread_and_show(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Saving waited in the engine for the running analysis (minutes with the real
    model) on the window's two-thread pool: two saves held it all, so the model checks,
    the status refresh and closing the window waited behind them. The model manager
    then showed the token cap it was opened with."""
    from PIL import Image

    gui = make_gui(model_path=tiny_checkpoint, device="cpu", max_new_tokens=12)
    engine = gui.application.engine
    engine.load()
    gui.window.model_manager_action.trigger()
    manager = gui.model_manager.dialog
    assert manager is not None
    qtbot.waitUntil(lambda: gui.model_manager.preview is not None, timeout=60_000)
    held = held_at_decode(Image.new("RGB", (64, 64), (120, 40, 20)), wait_s=30)
    image, decoding, release = held.image, held.decoding, held.release
    analysis = threading.Thread(target=engine.generate, args=(image,), daemon=True)
    analysis.start()
    try:
        assert decoding.wait(10)
        for max_new_tokens, device in ((64, "cpu"), (32, "auto")):  # two saves, the last wins
            dialog = _open(gui)
            dialog.max_new_tokens.setValue(max_new_tokens)
            dialog.device.setCurrentText(device)
            with qtbot.waitSignal(gui.settings_controller.settings_saved, timeout=5000):
                _ok(dialog)
        # The saves did not stay on the pool: a status refresh gets through.
        qtbot.waitUntil(lambda: not gui.slow_tasks.busy, timeout=3000)
        assert analysis.is_alive()
        assert manager.max_new_tokens.text() == "32 tokens"  # what the next one uses
        banner = gui.window.banner.text()
        assert "Device: the model loaded keeps running as it was" in banner, banner
    finally:
        release.set()
        analysis.join(30)
    after = engine.generate(Image.new("RGB", (64, 64), (120, 40, 20)))
    assert after.generation["max_new_tokens"] == 32
    engine.unload()


@pytest.mark.parametrize("device", ["CUDA:1", "Cuda", " cpu ", "MPS"])
def test_the_dialog_takes_a_device_as_the_setting_does_ignoring_case(
    tmp_path: Path, device: str
) -> None:
    """OPHTHAI_DEVICE=CUDA:1 starts the app; typed in the dialog it was refused ('use
    auto, cpu, mps, cuda or cuda:N'), as if the two did not share one pattern."""
    current = make_settings(tmp_path)

    assert settings_module.validate(current, {"device": device}).device == device
    with pytest.raises(InvalidInput, match="use auto, cpu"):
        settings_module.validate(current, {"device": "GPU"})


def test_an_origin_ending_in_a_line_break_is_refused(tmp_path: Path) -> None:
    """The origin's pattern ended in ``$``, which ``re.match`` lets match before a final
    line break: ``http://x\\n`` was saved as an origin no browser sends."""
    current = make_settings(tmp_path)

    with pytest.raises(InvalidInput, match="is not an origin"):
        settings_module.validate(current, {"cors_origins": ["http://localhost:4000\n"]})
    taken = settings_module.validate(current, {"cors_origins": ["http://localhost:4000"]})
    assert taken.cors_origins == ["http://localhost:4000"]
