"""Starting and stopping the embedded API server from the window, LAN access with a
token, and Help → Open API docs. Real servers on free ports."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
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


def test_lan_access_needs_a_token(qtbot: QtBot, desktop: Desktop) -> None:
    dialog = _dialog(qtbot, desktop)
    assert dialog.token.text() == ""
    dialog.lan.click()
    assert not dialog.lan.isChecked()
    assert "API token is needed" in dialog.hint.text()
    assert not desktop.session.server.lan


def test_with_a_generated_token_the_lan_server_requires_it(qtbot: QtBot, desktop: Desktop) -> None:
    dialog = _dialog(qtbot, desktop)
    dialog.generate_button.click()
    token = dialog.token.text()
    assert len(token) == 32
    dialog.copy_button.click()
    assert QGuiApplication.clipboard().text() == token
    dialog.lan.click()
    assert dialog.lan.isChecked()

    url = _start(qtbot, desktop, dialog)
    assert "0.0.0.0" not in url  # the address other computers use
    assert not dialog.lan.isEnabled()  # options change only while stopped
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
