"""Starting and stopping the embedded API server from the window, LAN access with a
token, and Help → Open API docs. Real servers on free ports."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QApplication, QDialogButtonBox
from pytestqt.qtbot import QtBot

from ophthai_desktop.desktop import Desktop
from ophthai_desktop.ui.views.server_dialog import ServerDialog
from tests.conftest import make_settings

START_TIMEOUT_MS = 20_000


@pytest.fixture
def desktop(tmp_path: Path) -> Iterator[Desktop]:
    """The whole desktop app with its server off at start, on a free port once started."""
    settings = make_settings(tmp_path, api_enabled=False, api_port=0, model_path=tmp_path / "none")
    app = Desktop(settings, tray=False)
    app.start()
    try:
        yield app
    finally:
        app.shutdown()


@pytest.fixture
def opened_urls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    urls: list[str] = []

    def capture(url: QUrl) -> bool:
        urls.append(url.toString())
        return True

    monkeypatch.setattr(QDesktopServices, "openUrl", capture)
    return urls


def _dialog(qtbot: QtBot, desktop: Desktop) -> ServerDialog:
    desktop.window.api_server_action.trigger()
    dialog = desktop.session.server.dialog
    assert dialog is not None
    qtbot.waitExposed(dialog)
    return dialog


def _start(qtbot: QtBot, desktop: Desktop, dialog: ServerDialog) -> str:
    status = desktop.window.status.api
    dialog.start_button.click()
    qtbot.waitUntil(lambda: status.text().startswith("API: http://"), timeout=START_TIMEOUT_MS)
    url = status.text().removeprefix("API: ")
    assert dialog.state.text() == f"running at {url}"
    assert dialog.stop_button.isEnabled() and not dialog.start_button.isEnabled()
    return url


def test_start_and_stop_the_server_from_the_window(
    qtbot: QtBot, desktop: Desktop, opened_urls: list[str]
) -> None:
    status = desktop.window.status.api
    assert status.text() == "API: off"
    desktop.window.api_docs_action.trigger()
    assert opened_urls == []  # nothing to open: told so in the banner instead
    assert "not running" in desktop.window.banner.text()

    dialog = _dialog(qtbot, desktop)
    assert dialog.state.text() == "stopped"
    url = _start(qtbot, desktop, dialog)
    assert url.startswith("http://127.0.0.1:")
    assert httpx.get(f"{url}/health", timeout=10).status_code == 200

    desktop.window.api_docs_action.trigger()
    assert opened_urls == [f"{url}/docs"]

    dialog.stop_button.click()
    qtbot.waitUntil(lambda: status.text() == "API: off", timeout=START_TIMEOUT_MS)
    assert dialog.state.text() == "stopped"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=5)


def _choose(dialog: ServerDialog, host: str) -> None:
    """Pick ``host`` from the list as a clinician does."""
    box = dialog.host
    index = next(i for i in range(box.count()) if box.itemText(i).split()[0] == host)
    box.setCurrentIndex(index)
    box.activated.emit(index)


def _type(qtbot: QtBot, dialog: ServerDialog, text: str) -> None:
    """Type ``text`` into the address field and press Enter."""
    edit = dialog.host.lineEdit()
    edit.clear()
    qtbot.keyClicks(edit, text)
    qtbot.keyClick(edit, Qt.Key.Key_Return)


def _own_addresses() -> list[str]:
    """This computer's IPv4 addresses on the network, as psutil lists them."""
    psutil = pytest.importorskip("psutil")
    stats = psutil.net_if_stats()
    found = [
        entry.address
        for name, entries in psutil.net_if_addrs().items()
        if name in stats and stats[name].isup
        for entry in entries
        if entry.family == socket.AF_INET and not entry.address.startswith("127.")
    ]
    if not found:
        pytest.skip("this computer has no network address besides loopback")
    return found


def test_the_dialog_opens_on_close(qtbot: QtBot, desktop: Desktop) -> None:
    """It opened with the focus on Start (Stop while running), where Space started (or
    stopped) the server. Now on Close: Space closes it and the server stays as it was
    (Enter presses no button here, see test_a_typed_address_is_checked)."""
    desktop.window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is desktop.window)
    dialog = _dialog(qtbot, desktop)
    qtbot.waitUntil(lambda: QApplication.activeWindow() is dialog)
    close = dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Close)
    focused = QApplication.focusWidget()
    assert focused is close, focused
    qtbot.keyClick(focused, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: not dialog.isVisible())
    qtbot.wait(200)
    assert desktop.window.status.api.text() == "API: off"


def test_lan_access_needs_a_token(qtbot: QtBot, desktop: Desktop) -> None:
    dialog = _dialog(qtbot, desktop)
    assert dialog.token.text() == ""
    assert dialog.host.currentText().split()[0] == "127.0.0.1"
    _choose(dialog, "0.0.0.0")
    assert "API token is needed" in dialog.hint.text()
    assert dialog.host.property("invalid") is True
    assert desktop.session.server.host == "127.0.0.1"
    dialog.start_button.click()  # refused while the field says what cannot be had
    assert "API token is needed" in dialog.hint.text()
    assert desktop.window.status.api.text() == "API: off"


def test_with_a_generated_token_the_lan_server_requires_it(qtbot: QtBot, desktop: Desktop) -> None:
    dialog = _dialog(qtbot, desktop)
    dialog.generate_button.click()
    token = dialog.token.text()
    assert len(token) == 32
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == token
    _choose(dialog, "0.0.0.0")
    assert dialog.host.property("invalid") is False
    assert desktop.session.server.host == "0.0.0.0"

    url = _start(qtbot, desktop, dialog)
    assert "0.0.0.0" not in url  # the address other computers use
    assert not dialog.host.isEnabled()  # options change only while stopped
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/api/patients").status_code == 401
        wrong = client.get("/api/patients", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.get("/api/patients", headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 200, right.text


def test_the_empty_token_field_shows_its_whole_hint(qtbot: QtBot, desktop: Desktop) -> None:
    """Its hint, "no token: only programs on this computer can connect", was cut off."""
    dialog = _dialog(qtbot, desktop)
    token = dialog.token
    assert token.text() == ""
    needed = token.fontMetrics().horizontalAdvance(token.placeholderText())
    assert needed <= token.width() - 12, (needed, token.width())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_server_restarts_with_the_saved_api_settings(qtbot: QtBot, desktop: Desktop) -> None:
    """The README: the API group of Settings applies when Tools → API server… restarts
    the server. It started on the port and token the app was started with."""
    port, token = _free_port(), "t" * 24
    current = desktop.application.settings
    desktop.session.settings_controller.apply(
        current.model_copy(update={"api_port": port, "api_token": token})
    )
    dialog = _dialog(qtbot, desktop)
    assert dialog.token.text() == token

    url = _start(qtbot, desktop, dialog)
    assert url == f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/api/patients").status_code == 401
        right = client.get("/api/patients", headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 200, right.text


def test_the_server_listens_on_one_of_this_computers_addresses(
    qtbot: QtBot, desktop: Desktop
) -> None:
    """A workstation with several networks offers the API on one of them only. Before,
    the dialog had "this computer" or every interface (0.0.0.0) and nothing between."""
    addresses = _own_addresses()
    dialog = _dialog(qtbot, desktop)
    offered = [dialog.host.itemText(i).split()[0] for i in range(dialog.host.count())]
    assert offered[:2] == ["127.0.0.1", "0.0.0.0"]
    assert set(addresses) <= set(offered[2:])
    dialog.generate_button.click()
    token = dialog.token.text()
    _choose(dialog, addresses[0])
    assert "Other computers" in dialog.hint.text()

    url = _start(qtbot, desktop, dialog)
    port = urlsplit(url).port
    assert url == f"http://{addresses[0]}:{port}"
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/api/patients").status_code == 401
        right = client.get("/api/patients", headers={"Authorization": f"Bearer {token}"})
        assert right.status_code == 200, right.text
    with pytest.raises(httpx.ConnectError):  # that interface only
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)


def test_a_typed_address_is_checked(qtbot: QtBot, desktop: Desktop) -> None:
    dialog = _dialog(qtbot, desktop)
    server = desktop.session.server
    _type(qtbot, dialog, "192.168.1.300")
    assert "not an IP address" in dialog.hint.text()
    assert dialog.host.currentText() == "192.168.1.300"  # kept, to be corrected
    assert dialog.host.property("invalid") is True
    _type(qtbot, dialog, "203.0.113.77")  # a documentation address: nobody's
    assert "not an address of this computer" in dialog.hint.text()
    dialog.start_button.click()
    assert "not an address of this computer" in dialog.hint.text()
    assert desktop.window.status.api.text() == "API: off"
    assert server.host == "127.0.0.1"

    _type(qtbot, dialog, "localhost")
    assert dialog.host.property("invalid") is False
    assert server.host == "localhost"
    _type(qtbot, dialog, " 127.0.0.1 ")
    assert server.host == "127.0.0.1"
    assert "Only programs on this computer" in dialog.hint.text()
    # Enter took the address and pressed no button.
    assert dialog.isVisible() and desktop.window.status.api.text() == "API: off"


def test_the_server_restarts_on_the_address_saved_in_settings(
    qtbot: QtBot, desktop: Desktop
) -> None:
    """OPHTHAI_API_HOST is the setting behind the choice. Before, any address but
    loopback saved in Settings became every interface (0.0.0.0) when Tools → API
    server… (re)started the server."""
    address = _own_addresses()[0]
    current = desktop.application.settings
    desktop.session.settings_controller.apply(
        current.model_copy(update={"api_host": address, "api_token": "t" * 24})
    )
    dialog = _dialog(qtbot, desktop)
    assert dialog.host.currentText().split()[0] == address
    url = _start(qtbot, desktop, dialog)
    port = urlsplit(url).port
    assert url == f"http://{address}:{port}"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)


# Host names -------------------------------------------------------------------------------

#: A name resolved by :func:`_resolver` below (this machine has no clinic DNS).
CLINIC_NAME = "myworkstation.clinic.local"
ELSEWHERE_NAME = "elsewhere.clinic.local"


@pytest.fixture
def clinic_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The resolver knows the clinic's names (filled in by the test), and no others
    beyond this machine's own."""
    names: dict[str, str] = {}
    real = socket.getaddrinfo

    def resolver(host: object, *args: object, **kwargs: object) -> object:
        if host in names:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (names[host], 0))]
        if isinstance(host, str) and host.endswith(".clinic.local"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    return names


def test_this_computers_host_name_is_taken_for_its_address(qtbot: QtBot, desktop: Desktop) -> None:
    """A host name was refused as "not an IP address". This machine's own name
    resolves to loopback or one of its addresses: taken, and listened on there."""
    name = socket.gethostname()
    try:
        resolved = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        pytest.skip("this computer's name does not resolve")
    loopback = resolved.startswith("127.") or resolved == "::1"
    if not loopback and resolved not in _own_addresses():
        pytest.skip(f"this computer's name resolves to {resolved}, not one of its addresses")
    dialog = _dialog(qtbot, desktop)
    if not loopback:
        dialog.generate_button.click()
    _type(qtbot, dialog, name)
    qtbot.waitUntil(lambda: f"{name} is {resolved}" in dialog.hint.text())
    assert dialog.host.property("invalid") is False
    url = _start(qtbot, desktop, dialog)
    assert urlsplit(url).hostname == resolved
    assert dialog.host.currentText() == name  # as the clinician typed it


def test_the_api_host_setting_may_be_a_name_of_this_computer(
    qtbot: QtBot, desktop: Desktop, clinic_dns: dict[str, str]
) -> None:
    """OPHTHAI_API_HOST=myworkstation.clinic.local, the dialog opened, Start: it said
    "... is not an IP address". The name is looked up off the GUI thread and the server
    listens on the address it names (one of this computer's)."""
    address = _own_addresses()[0]
    clinic_dns[CLINIC_NAME] = address
    current = desktop.application.settings
    desktop.session.settings_controller.apply(
        current.model_copy(update={"api_host": CLINIC_NAME, "api_token": "t" * 24})
    )
    dialog = _dialog(qtbot, desktop)
    assert dialog.host.currentText() == CLINIC_NAME
    url = _start(qtbot, desktop, dialog)
    assert url == f"http://{address}:{urlsplit(url).port}"
    assert f"{CLINIC_NAME} is {address}" in dialog.hint.text()


def test_a_host_name_of_another_computer_or_none_is_refused_with_the_reason(
    qtbot: QtBot, desktop: Desktop, clinic_dns: dict[str, str]
) -> None:
    clinic_dns[ELSEWHERE_NAME] = "203.0.113.77"  # a documentation address: nobody's
    dialog = _dialog(qtbot, desktop)
    server = desktop.session.server
    dialog.generate_button.click()  # the token is not what is missing

    _type(qtbot, dialog, ELSEWHERE_NAME)
    qtbot.waitUntil(lambda: dialog.host.property("invalid") is True)
    refused = f"{ELSEWHERE_NAME} is 203.0.113.77, not an address of this computer"
    assert refused in dialog.hint.text()
    dialog.start_button.click()
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled())
    assert "not an address of this computer" in dialog.hint.text()
    assert desktop.window.status.api.text() == "API: off"
    assert server.host == "127.0.0.1"
    assert dialog.host.currentText() == ELSEWHERE_NAME  # kept, to be corrected

    _type(qtbot, dialog, "nobody.clinic.local")
    qtbot.waitUntil(lambda: "not a known host name" in dialog.hint.text())
    assert dialog.host.property("invalid") is True
    assert server.host == "127.0.0.1"


def test_a_host_name_slow_to_look_up_neither_blocks_the_window_nor_is_taken(
    qtbot: QtBot, desktop: Desktop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A resolver that does not answer (a DNS server down): the window stays usable and
    the name is refused after a short while, with the reason."""
    from ophthai_desktop.ui.controllers import server as server_module

    answer = threading.Event()

    def unanswered(*_args: object, **_kwargs: object) -> object:
        answer.wait(30)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(server_module, "LOOKUP_TIMEOUT_S", 0.5)
    monkeypatch.setattr(socket, "getaddrinfo", unanswered)
    dialog = _dialog(qtbot, desktop)
    try:
        _type(qtbot, dialog, CLINIC_NAME)  # returns: the lookup is off the GUI thread
        assert dialog.hint.text() == f"Looking up {CLINIC_NAME}…"
        dialog.start_button.click()
        assert not dialog.start_button.isEnabled()  # until the lookup is answered
        qtbot.waitUntil(lambda: "could not be looked up within 0.5 s" in dialog.hint.text())
        assert dialog.start_button.isEnabled()
        assert desktop.window.status.api.text() == "API: off"
        assert desktop.session.server.host == "127.0.0.1"
    finally:
        answer.set()  # the lookups left behind end
