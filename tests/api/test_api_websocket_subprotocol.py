"""The WebSocket's subprotocol, through the real server and a real client: a browser
cannot set headers on a WebSocket, so a frontend may pass the token as a subprotocol
(``bearer.<token>``) beside the one the API speaks (``ophthai.v1``), which the server
echoes; it never echoes the token, nor logs it. A client that offers subprotocols but
not the API's is refused with a 400 saying what to offer: accepted without one, a
browser fails the connection without saying why."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ophthai_desktop.api import create_app
from ophthai_desktop.api.server import ApiServer
from ophthai_desktop.bootstrap import Application, build_application
from tests.conftest import make_settings
from tests.support.raw_http import StartServer

TOKEN = "Tok-en_" + "k" * 20  # as secrets.token_urlsafe makes them: subprotocol characters
WS_PATH = "/api/notifications/ws"


@pytest.fixture
def guarded_application(tmp_path: Path) -> Iterator[Application]:
    application = build_application(make_settings(tmp_path, api_token=TOKEN))
    try:
        yield application
    finally:
        application.close()


def ws_url(server: ApiServer) -> str:
    return server.url.replace("http://", "ws://") + WS_PATH


def test_the_api_subprotocol_is_echoed(
    sqlite_services: Application, live_server: StartServer
) -> None:
    server = live_server(create_app(sqlite_services))

    with connect(ws_url(server), subprotocols=["ophthai.v1"], open_timeout=5) as socket:
        assert socket.subprotocol == "ophthai.v1"
        assert socket.response is not None
        assert socket.response.headers["Sec-WebSocket-Protocol"] == "ophthai.v1"
        assert json.loads(socket.recv(timeout=5))["event"] == "connected"


def test_without_subprotocols_none_is_answered(
    sqlite_services: Application, live_server: StartServer
) -> None:
    server = live_server(create_app(sqlite_services))

    with connect(ws_url(server), open_timeout=5) as socket:
        assert socket.subprotocol is None
        assert json.loads(socket.recv(timeout=5))["event"] == "connected"


def test_the_token_as_a_subprotocol_opens_the_socket_and_is_never_echoed_nor_logged(
    guarded_application: Application, live_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG the WebSocket library logs the handshake's headers: the token in
    ``Sec-WebSocket-Protocol`` is redacted as an ``Authorization`` header is."""
    server = live_server(create_app(guarded_application))
    offered = ["ophthai.v1", f"bearer.{TOKEN}"]

    with (
        caplog.at_level(logging.DEBUG),
        connect(ws_url(server), subprotocols=offered, open_timeout=5) as socket,
    ):
        assert json.loads(socket.recv(timeout=5))["event"] == "connected"
        assert socket.subprotocol == "ophthai.v1"
        assert socket.response is not None
        assert TOKEN not in str(socket.response.headers)

    # The server's lines (the client library logs what it sent, the token with it).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("uvicorn"))
    assert "bearer.[redacted]" in logged  # the handshake's headers were logged
    assert TOKEN not in logged


@pytest.mark.parametrize("offered", [["ophthai.v1", "bearer.wrong-token"], ["ophthai.v1"]])
def test_a_wrong_or_missing_token_with_the_subprotocol_is_401(
    guarded_application: Application, live_server: StartServer, offered: list[str]
) -> None:
    server = live_server(create_app(guarded_application))

    with pytest.raises(InvalidStatus) as refused:
        connect(ws_url(server), subprotocols=offered, open_timeout=5)

    response = refused.value.response
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "bearer.<token>" in json.loads(response.body)["message"]


@pytest.mark.parametrize("offered", [[f"bearer.{TOKEN}"], ["graphql-ws"]])
def test_subprotocols_without_the_apis_are_refused_saying_what_to_offer(
    guarded_application: Application, live_server: StartServer, offered: list[str]
) -> None:
    """Accepted without a subprotocol, a browser fails the connection ("Sent non-empty
    'Sec-WebSocket-Protocol' header but no response was received") and the page cannot
    tell why; the 400's body names the one to offer."""
    server = live_server(create_app(guarded_application))

    with pytest.raises(InvalidStatus) as refused:
        connect(
            ws_url(server),
            subprotocols=offered,
            additional_headers={"Authorization": f"Bearer {TOKEN}"},
            open_timeout=5,
        )

    response = refused.value.response
    assert response.status_code == 400
    message = json.loads(response.body)["message"]
    assert "ophthai.v1" in message
    assert TOKEN not in message
    assert TOKEN not in str(response.headers)
