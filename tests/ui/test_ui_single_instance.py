"""One window per data folder: a second launch brings the running window to the front,
waits for one that is closing, and is refused by one that never lets go."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from ophthai_desktop.data_folder import SERVE_MARKER, held_by_serve
from ophthai_desktop.desktop import claim_data_folder, instance_lock
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.single_instance import (
    SOCKET_FILE,
    InstanceServer,
    ask_to_show,
    read_socket_name,
)

REPO = Path(__file__).resolve().parents[2]


def app_environment(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "QT_QPA_PLATFORM": "offscreen",
        "OPHTHAI_API_ENABLED": "false",
    }


def launch(data: Path, tmp_path: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ophthai_desktop", "--data-dir", str(data)],
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
        env=app_environment(tmp_path),
    )


def read_until(process: subprocess.Popen[str], marker: str) -> list[str]:
    """The app's stderr lines up to and including the first with ``marker``."""
    assert process.stderr is not None
    seen: list[str] = []
    for line in process.stderr:
        seen.append(line)
        if marker in line:
            return seen
    pytest.fail(f"the app ended before {marker!r}:\n{''.join(seen)}")


def terminate(process: subprocess.Popen[str]) -> str:
    """SIGTERM, then the rest of its stderr."""
    process.send_signal(signal.SIGTERM)
    try:
        _, rest = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return rest


@pytest.fixture
def listener(qtbot: QtBot, tmp_path: Path) -> Iterator[InstanceServer]:
    data = tmp_path / "data"
    data.mkdir()
    server = InstanceServer(data)
    assert server.listen()
    server.ready = True
    yield server
    server.close()


#: A second launch, as another process: its blocking socket calls hold this process's
#: interpreter lock, so from a thread here the listener (Python slots) could not answer.
SECOND_LAUNCH = """
import sys
from PySide6.QtCore import QCoreApplication
from PySide6.QtNetwork import QLocalSocket
from pathlib import Path
from ophthai_desktop.ui.single_instance import ask_to_show, read_socket_name
app = QCoreApplication([])
folder, data = Path(sys.argv[1]), sys.argv[2].encode()
if data == b"ask":
    print(ask_to_show(folder))
else:
    socket = QLocalSocket()
    socket.connectToServer(read_socket_name(folder))
    assert socket.waitForConnected(2000)
    socket.write(data)
    socket.flush()
    socket.waitForDisconnected(3000)
    print(repr(bytes(socket.readAll().data())))
"""


def second_launch(qtbot: QtBot, folder: Path, data: str = "ask") -> str:
    """Run :data:`SECOND_LAUNCH` while this process's Qt loop runs; what it printed."""
    with subprocess.Popen(
        [sys.executable, "-c", SECOND_LAUNCH, str(folder), data],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        qtbot.waitUntil(lambda: process.poll() is not None, timeout=30_000)
        out, err = process.communicate()
    assert process.returncode == 0, err
    return out.strip()


def test_the_socket_name_is_written_beside_the_lock_and_removed_at_close(
    qtbot: QtBot, listener: InstanceServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    name = read_socket_name(listener.data_dir)
    assert name == listener.name and "ophthai-desktop-" in name
    assert str(tmp_path) not in name  # random, and says nothing of the folder
    other = InstanceServer(tmp_path)  # another folder: another name
    assert other.listen()
    assert other.name != name
    other.close()

    listener.close()

    assert not (listener.data_dir / SOCKET_FILE).exists()
    assert ask_to_show(listener.data_dir) is False


def test_the_socket_lives_in_the_users_runtime_folder_where_there_is_one(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    server = InstanceServer(tmp_path)
    stale = runtime / "ophthai-desktop-0123456789abcdef"  # left by a crash
    stale.write_bytes(b"")
    (tmp_path / SOCKET_FILE).write_text(str(stale), encoding="utf-8")

    assert server.listen()

    assert Path(server.name).parent == runtime and Path(server.name).exists()
    assert not stale.exists()  # the crashed run's socket, removed under the lock
    server.close()


def test_a_name_file_naming_anything_but_one_of_its_sockets_deletes_nothing(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The name file lies in the data folder, which may be shared (OPHTHAI_DATA_DIR): a
    # name written there by someone else must not make the app delete that file.
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    data = tmp_path / "data"
    data.mkdir()
    precious = tmp_path / "notes.txt"
    for name in (
        str(precious),
        str(tmp_path / "ophthai-desktop-0123456789abcdef" / ".." / "notes.txt"),
        "../" * 20 + str(precious).lstrip("/"),
    ):
        precious.write_text("keep", encoding="utf-8")
        (data / SOCKET_FILE).write_text(name, encoding="utf-8")
        server = InstanceServer(data)

        assert server.listen()

        assert precious.read_text(encoding="utf-8") == "keep"
        assert read_socket_name(data) == server.name
        (data / SOCKET_FILE).write_text(name, encoding="utf-8")
        assert read_socket_name(data) is None  # not one of its names: not asked either
        server.close()


def test_a_window_taking_the_lock_removes_a_marker_that_a_serve_left(tmp_path: Path) -> None:
    """A serve killed (or ended by exit_now) leaves its process id beside the lock: were
    that id given again to this window, a second launch would be told a serve runs."""
    data = tmp_path / "data"
    data.mkdir()
    (data / SERVE_MARKER).write_text(str(os.getpid()))  # this process: the window's id
    claim = claim_data_folder(data, wait_s=0)
    assert claim.lock is not None
    try:
        assert not (data / SERVE_MARKER).exists()
        assert not held_by_serve(data, os.getpid())
    finally:
        claim.lock.unlock()


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_the_lock_and_the_name_file_are_the_owners_whatever_the_umask(
    qtbot: QtBot, tmp_path: Path
) -> None:
    # A data folder chosen with OPHTHAI_DATA_DIR keeps its mode (it may be shared): under
    # umask 000 others could rewrite the lock or the socket's name there.
    data = tmp_path / "data"
    data.mkdir()
    old = os.umask(0)
    try:
        claim = claim_data_folder(data, wait_s=0)
        server = InstanceServer(data)
        assert server.listen()
    finally:
        os.umask(old)
    assert claim.lock is not None
    try:
        for name in ("ophthai-desktop.lock", SOCKET_FILE):
            assert (data / name).stat().st_mode & 0o777 == 0o600, name
    finally:
        server.close()
        claim.lock.unlock()


def test_a_window_not_yet_there_gives_no_answer(qtbot: QtBot, listener: InstanceServer) -> None:
    asked: list[bool] = []
    listener.show_requested.connect(lambda: asked.append(True))
    listener.ready = False  # the services are still being built, or start-up failed

    assert second_launch(qtbot, listener.data_dir) == "False"
    assert asked == []


def test_asking_brings_a_hidden_window_to_the_front(
    qtbot: QtBot, gui: GuiSession, listener: InstanceServer
) -> None:
    listener.show_requested.connect(gui.show_window)
    gui.window.hide()  # in the tray, say

    assert second_launch(qtbot, listener.data_dir) == "True"
    assert gui.window.isVisible()


def test_nobody_listening_or_a_closed_listener_answers_no(
    qtbot: QtBot, listener: InstanceServer
) -> None:
    asked: list[bool] = []
    listener.show_requested.connect(lambda: asked.append(True))
    listener.close()  # the window started closing

    started = time.monotonic()
    assert ask_to_show(listener.data_dir) is False
    assert ask_to_show(Path("/nowhere")) is False
    assert time.monotonic() - started < 2
    assert asked == []


def test_anything_but_the_one_line_is_not_a_request(qtbot: QtBot, listener: InstanceServer) -> None:
    asked: list[bool] = []
    listener.show_requested.connect(lambda: asked.append(True))

    assert second_launch(qtbot, listener.data_dir, "quit\n") == "b''"
    assert second_launch(qtbot, listener.data_dir, "x" * 4096) == "b''"
    assert second_launch(qtbot, listener.data_dir) == "True"  # still answers a real one
    assert asked == [True]


def test_a_window_that_never_lets_go_is_refused_after_the_wait(tmp_path: Path) -> None:
    data = tmp_path / "data"
    held = instance_lock(data)
    assert held.tryLock(0)  # this process stands in for a hung window (nobody listens)
    try:
        started = time.monotonic()
        claim = claim_data_folder(data, wait_s=0.5)
        waited = time.monotonic() - started
    finally:
        held.unlock()

    assert claim.lock is None and not claim.shown_elsewhere
    assert f"already open on this data folder (process {os.getpid()})" in claim.refusal
    assert "did not answer or close within 0.5 s" in claim.refusal
    assert 0.5 <= waited < 5


def test_a_second_launch_brings_the_running_window_forward_and_ends(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = launch(data, tmp_path)
    try:
        read_until(first, "desktop window shown")

        second = subprocess.run(
            [sys.executable, "-m", "ophthai_desktop", "--data-dir", str(data)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            env=app_environment(tmp_path),
        )
    finally:
        rest = terminate(first)

    assert second.returncode == 0, second.stderr
    assert "its window was shown" in second.stderr
    assert "desktop window shown" not in second.stderr
    assert "a second launch on this data folder asked for the window" in rest
    assert first.returncode == 0, rest


def test_a_launch_while_the_window_closes_waits_for_it_then_starts(tmp_path: Path) -> None:
    """A window that is closing has stopped listening but still holds the lock (a
    running analysis and the server can take seconds to stop)."""
    data = tmp_path / "data"
    held = instance_lock(data)
    assert held.tryLock(0)  # this process stands in for the closing window
    second = launch(data, tmp_path)
    try:
        # Released once the launch is seen waiting (a timer released it before a slow
        # start had even looked, under load).
        read_until(second, "did not answer; waiting up to 30 s")
        held.unlock()
        read_until(second, "desktop window shown")
    finally:
        held.unlock()
        rest = terminate(second)

    assert second.returncode == 0, rest


def test_showing_the_window_keeps_it_maximised_and_unminimises_it(
    qtbot: QtBot, gui: GuiSession
) -> None:
    window = gui.window
    window.showMaximized()
    qtbot.waitUntil(window.isMaximized)
    window.hide()  # to the tray

    gui.show_window()

    assert window.isVisible() and window.isMaximized()
    window.showMinimized()
    qtbot.waitUntil(window.isMinimized)

    gui.show_window()

    assert not window.isMinimized() and window.isMaximized()
