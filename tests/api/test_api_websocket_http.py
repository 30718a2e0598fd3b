"""A plain HTTP request to the WebSocket's path (a browser's address bar, an HTTP
client) is told that the path is a WebSocket and how to connect, after the token and
origin checks the handshake makes; a handshake where there is no WebSocket, or refused
for its host, gets an HTTP answer with the JSON error body, not a bare 403."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from websockets.sync.client import connect

from ophthai_desktop.api import create_app
from ophthai_desktop.bootstrap import Application, build_application
from tests.conftest import make_settings
from tests.support.http import LoopbackClient
from tests.support.raw_http import (
    StartServer,
    header_fields,
    open_socket,
    read_response,
    read_until_closed,
)

TOKEN = "t" * 24
WS_PATHS = ["/api/notifications/ws", "/api/notifications/ws/"]


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TestClient]:
    """An API that requires the token."""
    application = build_application(make_settings(tmp_path, api_token=TOKEN))
    try:
        with LoopbackClient(create_app(application)) as client:
            yield client
    finally:
        application.close()


@pytest.mark.parametrize("path", WS_PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_a_plain_http_request_to_the_websocket_is_told_to_upgrade(
    client: TestClient, path: str, method: str
) -> None:
    response = client.request(method, path)

    assert response.status_code == 426, response.text
    assert response.headers["upgrade"] == "websocket"
    assert response.headers["connection"] == "Upgrade"
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert error["message"] == error["detail"]
    assert error["message"].startswith(f"{path} is a WebSocket: connect to ws://127.0.0.1{path}")
    assert "token" not in error["message"]  # none is configured
    assert response.headers["cache-control"] == "no-store"


def test_a_cors_preflight_at_the_websocket_is_still_answered_by_the_cors_settings(
    client: TestClient,
) -> None:
    preflight = {"Access-Control-Request-Method": "GET"}
    allowed = client.options(
        "/api/notifications/ws", headers={"Origin": "http://localhost:5173", **preflight}
    )
    refused = client.options(
        "/api/notifications/ws", headers={"Origin": "http://evil.example", **preflight}
    )

    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert refused.status_code == 400


def test_a_head_request_gets_the_426_without_a_body(client: TestClient) -> None:
    response = client.head("/api/notifications/ws")

    assert response.status_code == 426
    assert response.headers["upgrade"] == "websocket"
    assert response.content == b""


def test_without_the_token_the_plain_request_is_refused_first(guarded: TestClient) -> None:
    response = guarded.get("/api/notifications/ws")

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "token" in response.json()["message"]
    assert "upgrade" not in response.headers


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        (f"/api/notifications/ws?token={TOKEN}", {}),
        ("/api/notifications/ws", {"Authorization": f"Bearer {TOKEN}"}),
    ],
)
def test_with_the_token_the_answer_says_how_to_send_it_without_repeating_it(
    guarded: TestClient, url: str, headers: dict[str, str]
) -> None:
    response = guarded.get(url, headers=headers)

    assert response.status_code == 426
    assert TOKEN not in response.text
    message = response.json()["message"]
    assert "connect to ws://127.0.0.1/api/notifications/ws " in message
    assert "?token=<token>, Authorization: Bearer <token>" in message
    # A browser, which cannot set headers on a WebSocket, is told the subprotocol way.
    assert "['ophthai.v1', 'bearer.<token>']" in message


def test_a_page_at_a_refused_origin_is_refused_as_its_handshake_would_be(
    client: TestClient,
) -> None:
    refused = client.get("/api/notifications/ws", headers={"Origin": "http://evil.example"})
    allowed = client.get("/api/notifications/ws", headers={"Origin": "http://localhost:3000"})

    assert refused.status_code == 403
    assert "OPHTHAI_CORS_ORIGINS" in refused.json()["message"]
    assert allowed.status_code == 426


def test_the_openapi_document_lists_no_http_operation_at_the_websocket(
    client: TestClient,
) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert not [path for path in paths if path.rstrip("/").endswith("/ws")]


def test_the_real_server_answers_426_and_keeps_serving_the_websocket(
    sqlite_services: Application, live_server: StartServer
) -> None:
    """Through uvicorn: the 426 with its Upgrade headers leaves the connection usable
    for the next request, and a WebSocket client still connects at the same path."""
    server = live_server(create_app(sqlite_services))
    with open_socket(server) as sock:
        request = b"GET /api/notifications/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        sock.sendall(request)
        head, body = read_response(sock)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        next_head, _ = read_response(sock)

    assert head.split(b"\r\n")[0] == b"HTTP/1.1 426 Upgrade Required"
    fields = header_fields(head)
    assert fields["upgrade"] == "websocket"
    assert fields["connection"] == "Upgrade"
    assert json.loads(body)["message"].startswith("/api/notifications/ws is a WebSocket")
    assert next_head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    url = server.url.replace("http://", "ws://") + "/api/notifications/ws"
    with connect(url, open_timeout=5) as socket:
        assert json.loads(socket.recv(timeout=5))["event"] == "connected"


def refusal(client: TestClient, url: str) -> WebSocketDenialResponse:
    """The HTTP answer that refuses a handshake at ``url``."""
    with pytest.raises(WebSocketDenialResponse) as refused:  # noqa: SIM117
        with client.websocket_connect(url):
            pass
    return refused.value


@pytest.mark.parametrize("path", ["/api/notification/ws", "/api/patients", "/nowhere"])
def test_a_handshake_where_there_is_no_websocket_is_a_404_naming_where_it_is(
    client: TestClient, path: str
) -> None:
    """It was closed before it was accepted, which clients show as 403 Forbidden."""
    refused = refusal(client, path)

    assert refused.status_code == 404
    assert refused.json()["message"] == (
        f"there is no WebSocket at {path}; the API's WebSocket is /api/notifications/ws"
    )
    assert refused.headers["x-content-type-options"] == "nosniff"


def test_a_handshake_to_another_host_name_without_a_token_says_why(client: TestClient) -> None:
    """The host guard's refusal of a handshake had no body: the HTTP 403's text is the
    one that says what to do."""
    refused = refusal(client, "ws://rebound.example/api/notifications/ws")

    assert refused.status_code == 403
    assert "set OPHTHAI_API_TOKEN for network access" in refused.json()["message"]
    assert refused.headers["cache-control"] == "no-store"


def test_the_real_server_answers_a_handshake_at_a_wrong_path_with_a_404(
    sqlite_services: Application, live_server: StartServer
) -> None:
    server = live_server(create_app(sqlite_services))
    with open_socket(server) as sock:
        sock.sendall(
            b"GET /api/notifications/wss HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answer = read_until_closed(sock, within_s=5)

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 404 Not Found"
    assert json.loads(body)["message"].startswith("there is no WebSocket at /api/notifications/wss")
