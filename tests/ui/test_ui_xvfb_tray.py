"""The real system tray: ``ophthai`` on Xvfb with Debian's ``trayer`` as the tray.

Offscreen and on bare Xvfb Qt has no tray (alerts are in-window toasts; see
``test_ui_tray.py``). Here ``trayer`` gives the X server one, and the real app, started
as ``python -m ophthai_desktop``, is driven the way a user would (``xdotool``): clicks
on its tray icon, its menu opened with a right click and an item chosen with Down and
Enter (the presses counted in the menu ``TrayIcon`` builds, so the test follows the
menu as items are added or moved), the window closed as a window manager closes it
(a ``WM_DELETE_WINDOW`` message), a critical notification (created through the API, as
any client's is) shown as Qt's own balloon (X11 without a notification service). The
screen is saved as ``tray.png`` in the test's temporary folder.

``.ci/run`` installs Xvfb, trayer, xdotool and x11-utils (xwininfo); where one is
missing the test is skipped with that reason.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageGrab, features
from PySide6.QtWidgets import QApplication

from ophthai_desktop.ui.tray import TrayIcon
from tests.support.crash import crash_lines
from tests.support.xserver import app_env, xvfb

TOOLS = {"Xvfb": "xvfb", "trayer": "trayer", "xdotool": "xdotool", "xwininfo": "x11-utils"}
MISSING = [f"{tool} (apt-get install {package})" for tool, package in TOOLS.items()
           if shutil.which(tool) is None]  # fmt: skip
pytestmark = [
    pytest.mark.skipif(bool(MISSING), reason=f"not installed: {', '.join(MISSING)}"),
    pytest.mark.skipif(not features.check("xcb"), reason="Pillow cannot grab an X screen (no XCB)"),
    pytest.mark.skipif(ctypes.util.find_library("X11") is None, reason="no libX11"),
]

#: Every window of the app has the application's name as its title.
APP_TITLE = "OphthAI Desktop"
CRITICAL = "Abnormal finding: Wet AMD (92%) in patient 12"
#: Two clicks of one button at one place closer in time than this are one double click
#: (Qt's interval is 400 ms where the desktop sets none): the tray menu, chosen from with
#: the keyboard, leaves the mouse on the icon, and a right click there soon after the one
#: that opened it is a double click, which opens no menu.
DOUBLE_CLICK_S = 0.5


@dataclass(frozen=True)
class Win:
    """A window that is shown, in screen coordinates."""

    id: int
    x: int
    y: int
    width: int
    height: int

    @property
    def centre(self) -> tuple[int, int]:
        return self.x + self.width // 2, self.y + self.height // 2

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.x, self.y, self.x + self.width, self.y + self.height


def wait_for(what: str, check: Callable[[], object], timeout_s: float = 15.0) -> object:
    """Poll ``check`` until it returns something true; fail saying ``what`` if not."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


class Screen:
    """What a user sees on ``display``, and their mouse."""

    def __init__(self, display: str) -> None:
        self.display = display
        self.env = {"DISPLAY": display, "PATH": "/usr/bin:/bin:/usr/local/bin"}
        #: The last click: where, which button, when (time.monotonic()).
        self._last_click: tuple[int, int, int, float] | None = None

    def _run(self, *args: str) -> str:
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=10)
        return done.stdout

    def window(self, window_id: int) -> Win | None:
        """The window where it is on the screen, or None when it is not shown."""
        info = self._run("xwininfo", "-id", str(window_id))
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in info.splitlines())
        )
        if fields.get("Map State") != "IsViewable":
            return None
        return Win(
            window_id,
            int(fields["Absolute upper-left X"]),
            int(fields["Absolute upper-left Y"]),
            int(fields["Width"]),
            int(fields["Height"]),
        )

    def shown(self, name: str = APP_TITLE) -> list[Win]:
        """The top-level windows titled ``name`` that are shown now (xwininfo: xdotool's
        search by name misses Qt's balloon)."""
        lines = self.tree().splitlines()
        top = min(
            (len(ln) - len(ln.lstrip()) for ln in lines if ln.strip().startswith("0x")),
            default=0,
        )
        ids = [
            int(ln.split()[0], 16)
            for ln in lines
            if len(ln) - len(ln.lstrip()) == top and f'"{name}": ("' in ln
        ]
        return [win for win in (self.window(i) for i in ids) if win is not None]

    def tree(self) -> str:
        return self._run("xwininfo", "-root", "-tree")

    def click(self, x: int, y: int, button: int = 1) -> None:
        """A click, never taken with the one before as a double click."""
        if self._last_click is not None and self._last_click[:3] == (x, y, button):
            time.sleep(max(0.0, self._last_click[3] + DOUBLE_CLICK_S - time.monotonic()))
        self._run("xdotool", "mousemove", str(x), str(y), "click", str(button))
        self._last_click = (x, y, button, time.monotonic())

    def key(self, *keys: str) -> None:
        """Press and release ``keys`` in turn, as typed (to the window holding the
        keyboard: an open menu grabs it)."""
        self._run("xdotool", "key", *keys)

    def close(self, window_id: int) -> None:
        """Close a window as a window manager's close button does: WM_DELETE_WINDOW."""
        send_wm_delete(self.display, window_id)

    def grab(self) -> Image.Image:
        return ImageGrab.grab(xdisplay=self.display)


class _ClientMessage(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("serial", ctypes.c_ulong),
        ("send_event", ctypes.c_int),
        ("display", ctypes.c_void_p),
        ("window", ctypes.c_ulong),
        ("message_type", ctypes.c_ulong),
        ("format", ctypes.c_int),
        ("data", ctypes.c_long * 5),
    ]


class _XEvent(ctypes.Union):
    _fields_ = [("xclient", _ClientMessage), ("pad", ctypes.c_long * 24)]


def send_wm_delete(display: str, window_id: int) -> None:
    """Send ``WM_DELETE_WINDOW`` to a window (what a window manager does on close)."""
    x11 = ctypes.CDLL(ctypes.util.find_library("X11"))
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XInternAtom.restype = ctypes.c_ulong
    x11.XInternAtom.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
    x11.XSendEvent.argtypes = [
        ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_long, ctypes.c_void_p,
    ]  # fmt: skip
    x11.XFlush.argtypes = x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    connection = x11.XOpenDisplay(display.encode())
    assert connection, f"cannot open display {display}"
    try:
        event = _XEvent()
        event.xclient.type = 33  # ClientMessage
        event.xclient.window = window_id
        event.xclient.message_type = x11.XInternAtom(connection, b"WM_PROTOCOLS", 0)
        event.xclient.format = 32
        event.xclient.data[0] = x11.XInternAtom(connection, b"WM_DELETE_WINDOW", 0)
        x11.XSendEvent(connection, window_id, 0, 0, ctypes.byref(event))
        x11.XFlush(connection)
    finally:
        x11.XCloseDisplay(connection)


TRAYER = ["trayer", "--edge", "top", "--align", "right", "--widthtype", "request",
          "--height", "24", "--transparent", "false"]  # fmt: skip
#: How long trayer gets to show its panel (it takes a fraction of a second), and how
#: many times it is started: in two of some twenty early runs here it stayed up without
#: ever showing its panel.
TRAYER_WAIT_S = 5.0
TRAYER_TRIES = 2


@pytest.fixture
def tray_display(tmp_path: Path) -> Iterator[str]:
    """Xvfb with trayer docked at its top right."""
    with xvfb() as display, (tmp_path / "trayer.log").open("w") as output:
        screen = Screen(display)
        for _ in range(TRAYER_TRIES):
            trayer = subprocess.Popen(
                TRAYER,
                env={"DISPLAY": display, "PATH": "/usr/bin:/bin"},
                stdout=output,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + TRAYER_WAIT_S
            while '"panel": ("panel" "trayer")' not in screen.tree():
                if time.monotonic() > deadline or trayer.poll() is not None:
                    break
                time.sleep(0.05)
            else:
                break
            trayer.terminate()
            trayer.wait(10)
        else:
            pytest.fail(
                f"trayer showed no panel (exit status {trayer.returncode}; its output: "
                f"{(tmp_path / 'trayer.log').read_text()!r})"
            )
        try:
            yield display
        finally:
            trayer.terminate()
            trayer.wait(10)


def tray_icon(screen: Screen) -> Win | None:
    """The app's icon as docked in trayer's panel (a window inside the panel's)."""
    tree = screen.tree().splitlines()
    for at, line in enumerate(tree):
        if '"panel": ("panel" "trayer")' in line:
            indent = len(line) - len(line.lstrip())
            for inner in tree[at + 1 :]:
                if inner.strip() and len(inner) - len(inner.lstrip()) <= indent:
                    break
                if f'"{APP_TITLE}"' in inner:
                    return screen.window(int(inner.split()[0], 16))
    return None


def count_pixels(
    image: Image.Image, box: tuple[int, int, int, int], rule: Callable[[Any], Any]
) -> int:
    """How many pixels of ``image`` in ``box`` meet ``rule`` (on an RGB array)."""
    rgb = np.asarray(image.crop(box).convert("RGB")).astype(int)
    return int(rule(rgb).sum())


def red(rgb: Any) -> Any:
    """The critical toast's dark red (the window has only a few small red icons)."""
    return (rgb[..., 0] > 110) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)


def pale_yellow(rgb: Any) -> Any:
    """Qt's tray balloon."""
    return (rgb[..., 0] > 240) & (rgb[..., 1] > 240) & (rgb[..., 2] < 235)


def teal(rgb: Any) -> Any:
    """The app's icon."""
    return (rgb[..., 2] > 100) & (rgb[..., 0] < 60)


def api(url: str, path: str, body: dict[str, object] | None = None) -> object:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url + path, data=data, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def write_scan(folder: Path, name: str, shade: int) -> None:
    """A small image (each shade a different file: the same one twice is one patient)."""
    Image.new("RGB", (64, 64), (90, shade, 20)).save(folder / name)


def menu_places(qapp: QApplication, *actions: str) -> dict[str, int]:
    """How many Down presses reach each of ``actions`` (:class:`TrayIcon`'s attributes:
    ``"quit_action"``) in the tray icon's menu opened with the mouse, where no item is
    active and the first Down goes to the first item. Counted in the menu that
    :class:`TrayIcon` builds, separators passed over: the test follows the menu as items
    are added, moved or reworded."""
    tray = TrayIcon()
    try:
        items = [a for a in tray.menu.actions() if not a.isSeparator() and a.isVisible()]
        return {name: items.index(getattr(tray, name)) + 1 for name in actions}
    finally:
        tray.menu.deleteLater()
        tray.deleteLater()


def launch_app(
    env: dict[str, str], cwd: Path
) -> tuple[subprocess.Popen[str], list[str], threading.Thread]:
    """``ophthai`` started as a user starts it; its log's lines as they come, read by
    the thread returned (joined once the process has ended)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ophthai_desktop"],
        cwd=cwd,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return process, lines, reader


def test_the_real_tray(tray_display: str, tmp_path: Path, qapp: QApplication) -> None:
    screen = Screen(tray_display)
    places = menu_places(qapp, "show_action", "pause_action", "quit_action")
    watch = tmp_path / "watch"
    watch.mkdir()
    env = app_env(tray_display, tmp_path / "data")
    env.update(
        OPHTHAI_WATCH_FOLDER_ENABLED="true",
        OPHTHAI_WATCH_FOLDER_PATH=str(watch),
        OPHTHAI_WATCH_POLL_SECONDS="0.2",
        OPHTHAI_MINIMIZE_TO_TRAY="true",
    )
    process, lines, reader = launch_app(env, tmp_path)

    def logged(text: str) -> bool:
        return any(text in line for line in list(lines))

    try:
        wait_for("the API server", lambda: logged("API server listening on"), 60)
        assert logged("system tray: icon shown"), "Qt found no tray"
        url = next(ln for ln in lines if "listening on" in ln).split("listening on ")[1].strip()
        main = max(screen.shown(), key=lambda win: win.width * win.height)
        assert main.width >= 1000, main

        # The icon docked in the tray, visible: the app's teal in trayer's 22-24 px.
        icon = wait_for("the icon in the tray", lambda: tray_icon(screen))
        assert isinstance(icon, Win)
        assert 16 <= icon.width <= 24 and 16 <= icon.height <= 24, icon
        assert icon.x + icon.width <= 1600 and icon.y < 24, icon

        # The watch folder takes a file in; the time it takes bounds the wait below.
        started = time.monotonic()
        write_scan(watch, "first.png", 40)
        wait_for("the first file taken in", lambda: not (watch / "first.png").exists(), 20)
        intake_s = time.monotonic() - started

        # A critical notification: Qt's balloon at the icon, and no in-window toast.
        before = {win.id for win in screen.shown()}
        api(url, "/api/notifications", {"message": CRITICAL, "type": "critical"})

        def balloon() -> Win | None:
            return next((w for w in screen.shown() if w.id not in before), None)

        tip = wait_for("the tray balloon", balloon)
        assert isinstance(tip, Win)
        assert tip.x + tip.width > icon.x - 40 and tip.y < 120, (tip, icon)  # at the icon

        def drawn() -> bool:
            # Shown (mapped) comes before painted: a busy app paints it a moment later.
            yellow = count_pixels(screen.grab(), tip.box, pale_yellow)
            return yellow > tip.width * tip.height // 3

        wait_for("the balloon drawn in Qt's pale yellow", drawn)
        time.sleep(0.3)  # the window's repaint drawn too: no toast in it
        shot = screen.grab()
        shot.save(tmp_path / "tray.png")
        assert count_pixels(shot, icon.box, teal) > 50, "the icon is not drawn"
        assert count_pixels(shot, main.box, red) < 1500, "an in-window toast was shown too"

        # A click on the icon brings the window to the front; closing it hides it to
        # the tray and the app carries on.
        screen.close(main.id)
        wait_for("the window hidden", lambda: screen.window(main.id) is None)
        time.sleep(0.5)
        assert process.poll() is None, "closing the window quit the app"
        screen.click(*icon.centre)
        wait_for("the window shown again", lambda: screen.window(main.id))

        def choose(action: str) -> None:
            """Open the icon's menu (right click) and choose ``action``'s item with the
            keyboard: Down as many times as its place in the menu, then Enter."""
            shown = {win.id for win in screen.shown()}
            screen.click(*icon.centre, button=3)
            menu = wait_for(
                "the tray menu",
                lambda: next(
                    (w for w in screen.shown() if w.id not in shown and w.height < 300), None
                ),
            )
            assert isinstance(menu, Win)
            # The first Down highlights the first item: the menu is seen to change before
            # the other keys go, so none is typed before the menu holds the keyboard.
            before = screen.grab().crop(menu.box)
            screen.key("Down")
            wait_for(
                "the menu's first item highlighted",
                lambda: ImageChops.difference(screen.grab().crop(menu.box), before).getbbox(),
                5,
            )
            screen.key(*["Down"] * (places[action] - 1), "Return")
            wait_for("the menu closed", lambda: screen.window(menu.id) is None)

        # Show, from the menu, after the window was closed again.
        screen.close(main.id)
        wait_for("the window hidden", lambda: screen.window(main.id) is None)
        choose("show_action")
        wait_for("the window shown from the menu", lambda: screen.window(main.id))

        # Pause watch folder: a file written while paused stays, and is taken in on
        # Resume (the same item).
        choose("pause_action")
        wait_for("Pause checked", lambda: logged("watch folder paused"), 10)
        write_scan(watch, "second.png", 80)
        time.sleep(2 * intake_s + 1)  # longer than the watch folder took above
        assert (watch / "second.png").exists(), "taken in while paused"
        choose("pause_action")
        wait_for("the paused file taken in", lambda: not (watch / "second.png").exists(), 20)
        patients = api(url, "/api/patients")
        assert isinstance(patients, list) and len(patients) == 2

        # Quit ends the app cleanly.
        choose("quit_action")
        assert process.wait(30) == 0, "".join(lines)
    except BaseException:
        print("".join(lines))  # the app's log, in the failure's report
        raise
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        reader.join(10)
        assert process.stderr is not None
        process.stderr.close()
    log = "".join(lines)
    assert "desktop stopped" in log, log
    assert "exiting without waiting" not in log, log  # no thread was left running
    assert not crash_lines(log), log


def test_sigterm_quits_the_app_in_the_tray(tray_display: str, tmp_path: Path) -> None:
    """SIGTERM (the session's logout, systemd, `kill`) ends the app with status 0 when
    it has a tray icon. Qt's quit asked the window to close, which with a tray only hid
    it: the app went on, hidden, until the X server went away."""
    env = app_env(tray_display, tmp_path / "data")
    env.update(OPHTHAI_API_ENABLED="false", OPHTHAI_MINIMIZE_TO_TRAY="true")
    process, lines, reader = launch_app(env, tmp_path)
    try:
        wait_for("the window", lambda: any("desktop window shown" in ln for ln in lines), 60)
        assert any("system tray: icon shown" in line for line in lines), "Qt found no tray"
        process.terminate()
        try:
            status = process.wait(30)
        except subprocess.TimeoutExpired:
            status = None
        assert status == 0, "".join(lines)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        reader.join(10)
        assert process.stderr is not None
        process.stderr.close()
    output = "".join(lines)
    assert "desktop stopped" in output
    assert not crash_lines(output), output
