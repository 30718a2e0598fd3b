"""The real server ends a request whose body stops arriving (a client that trickles an
upload, or one gone mid-upload) and stores nothing of it; a body that keeps coming,
however slowly, a long answer and a WebSocket are not limited."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient
from PIL import Image
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from websockets.sync.client import connect

from ophthai_desktop.api import create_app
from ophthai_desktop.api.http_protocol import (
    BODY_TIMEOUT_S,
    HEAD_TIMEOUT_S,
    app_cors,
    cors_headers,
)
from ophthai_desktop.api.server import ApiServer
from ophthai_desktop.bootstrap import Application, build_application
from tests.conftest import make_settings
from tests.support.raw_http import (
    StartServer,
    header_fields,
    open_socket,
    read_response,
    read_until_closed,
)

#: The shortened limit: long enough that a loaded test machine sends a steady body's
#: chunks well within it.
TIMEOUT_S = 1.0
#: How long past the limit a test waits for the server to act.
GRACE_S = 5.0
#: A name sent in the cut-off bodies: it must not reach the log.
NAME = "Adalind Quenneville"

Serve = Callable[..., ApiServer]


@pytest.fixture
def serve(live_server: StartServer) -> Serve:
    """Starts the real server for an app with the body timeout shortened."""

    def start(app: FastAPI, body_timeout_s: float = TIMEOUT_S) -> ApiServer:
        return live_server(app, body_timeout_s=body_timeout_s)

    return start


def request_head(
    method: str, path: str, content_type: str, length: int, origin: str | None = None
) -> bytes:
    sent_from = f"Origin: {origin}\r\n" if origin else ""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{sent_from}"
        f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def noise_png(side: int) -> bytes:
    """A PNG that does not compress: ``side`` x ``side`` RGB noise."""
    image = Image.frombytes("RGB", (side, side), os.urandom(side * side * 3))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def scan_upload(png: bytes) -> tuple[bytes, str]:
    """A multipart body for ``POST /api/patients/{id}/scans``, and its content type."""
    request = httpx.Request(
        "POST",
        "http://127.0.0.1/",
        files={"file": (f"{NAME}.png", png, "image/png")},
        data={"modality": "fundus"},
    )
    return request.read(), request.headers["content-type"]


def handlers_running(server: ApiServer) -> int:
    """The server's requests still being handled (uvicorn's own count)."""
    return len(server._server.server_state.tasks)


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GRACE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def wait_until_handlers_end(server: ApiServer) -> None:
    deadline = time.monotonic() + GRACE_S
    while handlers_running(server):
        if time.monotonic() > deadline:
            pytest.fail("the handler of the cut-off request is still running")
        time.sleep(0.02)


def files_under(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()]


def stall_mid_body(server: ApiServer, head: bytes, sent: bytes) -> tuple[bytes, float]:
    """Sends a request's head and part of its body, then nothing: what the server answers
    until it closes the connection, and how long after the last byte it did."""
    with open_socket(server) as sock:
        sock.sendall(head + sent)
        stalled = time.monotonic()
        received = read_until_closed(sock, TIMEOUT_S + GRACE_S)
        return received, time.monotonic() - stalled


def assert_408_json(received: bytes) -> None:
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), received[:200]
    assert b"\r\ncontent-type: application/json\r\n" in head
    assert b"\r\nconnection: close" in head
    error = json.loads(body)
    assert "stopped arriving" in error["message"]
    assert error["detail"] == error["message"]


def test_a_client_that_leaves_mid_body_is_not_an_error_in_the_log(
    serve: Serve, sqlite_services: Application, caplog: pytest.LogCaptureFixture
) -> None:
    """A laptop closed mid-upload: the handler ends and stores nothing, and the log
    does not report a failure of the server."""
    server = serve(create_app(sqlite_services))
    body = json.dumps({"name": NAME, "notes": "x" * 100_000}).encode()
    head = request_head("POST", "/api/patients", "application/json", len(body))

    with caplog.at_level(logging.DEBUG), open_socket(server) as sock:
        sock.sendall(head + body[: len(body) // 2])
        # Read by the server before the close: else the checks below could run before it
        # took the request in, and pass whatever it then did.
        wait_for(lambda: handlers_running(server) == 1, "the request's handler to start")
        sock.close()
        wait_until_handlers_end(server)

    assert sqlite_services.patients.list_patients().total == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_json_body_that_stops_mid_way_gets_408_and_nothing_is_stored(
    serve: Serve, sqlite_services: Application, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(create_app(sqlite_services))
    body = json.dumps({"name": NAME, "notes": "x" * 100_000}).encode()
    head = request_head("POST", "/api/patients", "application/json", len(body))

    with caplog.at_level(logging.DEBUG):
        received, held_s = stall_mid_body(server, head, body[: len(body) // 2])
        wait_until_handlers_end(server)

    assert_408_json(received)
    assert held_s >= TIMEOUT_S * 0.9
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/api/patients").json() == []
    assert sqlite_services.patients.list_patients().total == 0
    ours = [r for r in caplog.records if r.name == "ophthai_desktop.api.http_protocol"]
    assert len(ours) == 1
    assert "127.0.0.1" not in ours[0].getMessage()
    assert not [r for r in caplog.records if "Adalind" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


#: The one origin the app of the CORS tests allows.
FRONTEND = "http://clinic.lan:8080"


@pytest.fixture
def frontend_services(tmp_path: Path) -> Iterator[Application]:
    """Services whose settings allow one browser origin, :data:`FRONTEND`."""
    application = build_application(make_settings(tmp_path, cors_origins=[FRONTEND]))
    yield application
    application.close()


def test_a_408_to_a_page_on_an_allowed_origin_carries_the_apps_cors_headers(
    frontend_services: Application, serve: Serve
) -> None:
    """A browser frontend reads the 408 (its status and message) as it reads the app's
    other answers, instead of an opaque network error."""
    server = serve(create_app(frontend_services))
    body = json.dumps({"name": NAME}).encode()
    head = request_head("POST", "/api/patients", "application/json", len(body), FRONTEND)

    received, _ = stall_mid_body(server, head, body[:10])
    with httpx.Client(base_url=server.url) as http:
        answered = http.get("/api/patients", headers={"Origin": FRONTEND})

    assert_408_json(received)
    expected = {k: v for k, v in answered.headers.items() if k.startswith("access-control-")}
    assert expected["access-control-allow-origin"] == FRONTEND
    fields = header_fields(received.partition(b"\r\n\r\n")[0])
    assert {name: fields.get(name) for name in expected} == expected
    assert "Origin" in fields["vary"]


@pytest.mark.parametrize(
    "options",
    [
        {"allow_origins": [FRONTEND], "allow_credentials": True, "expose_headers": ["ETag"]},
        {"allow_origins": ["*"], "allow_credentials": True},
        {"allow_origins": ["*"]},
        {"allow_origin_regex": r"http://.*\.lan:8080"},
    ],
)
@pytest.mark.parametrize("origin", [FRONTEND, "http://evil.example"])
def test_the_cors_headers_the_server_writes_are_the_middlewares(
    options: dict[str, Any], origin: str
) -> None:
    """Those of an allowed origin, as Starlette's CORS middleware adds them to an answer
    (none for another origin, which the 408 is not meant to let read)."""
    app = Starlette(
        routes=[Route("/", lambda _request: PlainTextResponse("ok"))],
        middleware=[Middleware(CORSMiddleware, **options)],
    )
    with TestClient(app) as client:
        answered = client.get("/", headers={"Origin": origin}).headers

    cors = app_cors(app)
    assert cors is not None
    ours = {name.decode(): value.decode() for name, value in cors_headers(cors, origin)}
    if "access-control-allow-origin" in answered:
        assert ours == {
            name: value
            for name, value in answered.items()
            if name.startswith("access-control-") or name == "vary"
        }
    else:
        assert ours == {}


def test_a_scan_upload_that_stops_mid_way_leaves_no_scan_and_no_file(
    serve: Serve, sqlite_services: Application
) -> None:
    server = serve(create_app(sqlite_services))
    with httpx.Client(base_url=server.url) as http:
        patient = http.post("/api/patients", json={"name": "Ada"}).json()
    store = sqlite_services.images.root
    before = files_under(store)
    # Past Starlette's 1 MB in memory: the part already read is in a temporary file.
    body, content_type = scan_upload(noise_png(1024))
    path = f"/api/patients/{patient['id']}/scans"

    received, _ = stall_mid_body(
        server, request_head("POST", path, content_type, len(body)), body[: len(body) // 2]
    )
    wait_until_handlers_end(server)

    assert_408_json(received)
    with httpx.Client(base_url=server.url) as http:
        assert http.get(path).json() == []
        assert http.get(f"/api/patients/{patient['id']}").json()["imageUrl"] is None
    assert files_under(store) == before


def test_a_slow_steady_scan_upload_is_read_to_its_end(
    serve: Serve, sqlite_services: Application
) -> None:
    """Each chunk comes well within the limit; the whole takes more than twice it."""
    # Longer than the others: a chunk held up on a busy machine is not a stall.
    timeout_s = TIMEOUT_S * 2
    server = serve(create_app(sqlite_services), body_timeout_s=timeout_s)
    with httpx.Client(base_url=server.url, timeout=GRACE_S * 2) as http:
        patient = http.post("/api/patients", json={"name": "Ada"}).json()
        body, content_type = scan_upload(noise_png(256))
        parts = 12
        size = -(-len(body) // parts)

        def slowly() -> Iterator[bytes]:
            for start in range(0, len(body), size):
                time.sleep(timeout_s * 0.2)
                yield body[start : start + size]

        started = time.monotonic()
        response = http.post(
            f"/api/patients/{patient['id']}/scans",
            content=slowly(),
            headers={"Content-Type": content_type},
        )
        took_s = time.monotonic() - started
        scans = http.get(f"/api/patients/{patient['id']}/scans").json()

    assert response.status_code == 201, response.text
    assert took_s > timeout_s * 2
    assert [scan["id"] for scan in scans] == [response.json()["id"]]


def test_a_body_that_stops_after_an_early_answer_is_closed_without_another(
    serve: Serve, sqlite_services: Application
) -> None:
    """A 404 goes out before the body is read; the client then stops sending it."""
    server = serve(create_app(sqlite_services))
    head = request_head("POST", "/api/no-such-thing", "application/json", 4096)
    with open_socket(server) as sock:
        sock.sendall(head)
        answer, _ = read_response(sock)
        assert answer.startswith(b"HTTP/1.1 404 "), answer
        sock.sendall(b"x" * 1024)
        received = read_until_closed(sock, TIMEOUT_S + GRACE_S)

    assert received == b""


def slow_app(sqlite_services: Application) -> FastAPI:
    """The API with two routes that answer slowly, in chunks, over several limits: one
    after reading the body, one without reading it, which also works past the limit
    before its answer starts."""
    app = create_app(sqlite_services)

    async def chunks() -> AsyncIterator[bytes]:
        # The first at once: GZipMiddleware holds an answer's start until its first
        # chunk, and until then the server sees no answer begun.
        for i in range(5):
            if i:
                await asyncio.sleep(TIMEOUT_S * 0.6)
            yield b"chunk %d\n" % i

    @app.post("/test/after-body")
    async def after_body(body: dict[str, str]) -> StreamingResponse:
        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/test/before-body")
    async def before_body() -> StreamingResponse:
        # Past the limit, whatever the load: the answer cannot have begun in time.
        await asyncio.sleep(TIMEOUT_S * 2)
        return StreamingResponse(chunks(), media_type="text/plain")

    @app.post("/test/late-read")
    async def late_read(request: Request) -> dict[str, int]:
        await asyncio.sleep(TIMEOUT_S * 2)
        return {"read": len(await request.body())}

    return app


def read_chunked(sock: socket.socket) -> bytes:
    """A chunked response, head and body, up to its last chunk."""
    data = b""
    while not data.endswith(b"0\r\n\r\n"):
        chunk = sock.recv(65536)
        assert chunk, f"closed mid-response: {data!r}"
        data += chunk
    return data


def test_a_slow_answer_to_a_whole_body_is_sent_in_full(
    serve: Serve, sqlite_services: Application
) -> None:
    server = serve(slow_app(sqlite_services))
    with httpx.Client(base_url=server.url, timeout=GRACE_S) as http:
        started = time.monotonic()
        response = http.post("/test/after-body", json={"name": "Ada"})
        took_s = time.monotonic() - started

    assert response.status_code == 200
    assert response.text.count("chunk ") == 5
    assert took_s > TIMEOUT_S * 2


def test_an_answer_sent_while_the_body_stalls_is_finished_before_the_close(
    serve: Serve, sqlite_services: Application
) -> None:
    """The handler answers without reading the body, after working past the limit, and
    slowly; the client has stopped sending the body. No 408 asks the client to send
    again a request the handler carries out: the answer is sent in full; once the client
    has sent a little more and stopped again, the connection is closed."""
    server = serve(slow_app(sqlite_services))
    head = request_head("POST", "/test/before-body", "text/plain", 4096)
    with open_socket(server) as sock:
        sock.sendall(head + b"x" * 1024)
        sock.settimeout(TIMEOUT_S * 5 + GRACE_S)
        answer = read_chunked(sock)
        # (Bytes after the answer also stop uvicorn's keep-alive timer, which would
        # close an idle connection on its own.)
        sock.sendall(b"x" * 1024)
        received = read_until_closed(sock, TIMEOUT_S + GRACE_S)

    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert answer.count(b"chunk ") == 5
    assert received == b""


def test_a_handler_that_turns_to_the_body_late_gives_it_the_whole_limit_from_then(
    serve: Serve, sqlite_services: Application
) -> None:
    """What came waits for the handler past the limit; the body, still stalled once the
    handler has taken it, then gets its 408 a whole limit later."""
    server = serve(slow_app(sqlite_services))
    head = request_head("POST", "/test/late-read", "application/json", 4096)

    received, held_s = stall_mid_body(server, head, b"x" * 1024)

    assert_408_json(received)
    assert held_s >= TIMEOUT_S * 2 + TIMEOUT_S * 0.9


def test_a_pipelined_body_that_stalls_waits_for_the_answer_before_it(
    serve: Serve, sqlite_services: Application
) -> None:
    """Two requests in one packet: the first answered slowly, the second's body cut
    off. The first answer is sent in full; the second then gets its 408."""
    server = serve(slow_app(sqlite_services))
    first = b'{"name": "Ada"}'
    second = json.dumps({"name": NAME}).encode()
    with open_socket(server) as sock:
        sock.sendall(
            request_head("POST", "/test/after-body", "application/json", len(first))
            + first
            + request_head("POST", "/api/patients", "application/json", len(second))
            + second[:10]
        )
        sock.settimeout(TIMEOUT_S * 5 + GRACE_S)
        answer = read_chunked(sock)
        received = read_until_closed(sock, TIMEOUT_S + GRACE_S)
    wait_until_handlers_end(server)

    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert answer.count(b"chunk ") == 5
    assert_408_json(received)
    assert sqlite_services.patients.list_patients().total == 0


def test_a_websocket_left_idle_past_the_limit_stays_open(
    serve: Serve, sqlite_services: Application
) -> None:
    server = serve(create_app(sqlite_services))
    url = server.url.replace("http://", "ws://") + "/api/notifications/ws"
    with connect(url, open_timeout=GRACE_S) as ws:
        assert json.loads(ws.recv(timeout=GRACE_S))["event"] == "connected"
        time.sleep(TIMEOUT_S * 2)
        ws.send("ping")
        assert json.loads(ws.recv(timeout=GRACE_S))["event"] == "pong"


def test_the_document_says_a_body_that_stops_arriving_gets_the_408(client: TestClient) -> None:
    """The OpenAPI document lists the 408 on every route: for the body's limit too, not
    only the head's."""
    document = client.get("/openapi.json").json()

    meaning = document["paths"]["/api/patients"]["post"]["responses"]["408"]["description"]
    assert f"{HEAD_TIMEOUT_S:g} s" in meaning
    assert f"body stopped arriving for {BODY_TIMEOUT_S:g} s" in meaning
