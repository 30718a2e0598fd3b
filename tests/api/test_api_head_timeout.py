"""The real server closes connections that do not deliver a request's head in time
(slowloris), and leaves bodies, responses and WebSockets alone; it answers connections
beyond its cap with a 503 and closes them."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import re
import select
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from PIL import Image
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from ophthai_desktop.api import create_app, http_protocol
from ophthai_desktop.api.http_protocol import (
    MAX_CONNECTIONS,
    MAX_HEAD_BYTES,
    REFUSAL_LINGER_S,
    REFUSAL_RETRY_AFTER_S,
    connection_cap,
)
from ophthai_desktop.api.server import ApiServer
from ophthai_desktop.bootstrap import Application
from tests.support.raw_http import (
    StartServer,
    header_fields,
    open_socket,
    read_response,
    read_until_closed,
)

#: The shortened limit for the tests that wait for it to pass.
TIMEOUT_S = 0.5
#: How long past the limit a test waits for the server to close the connection.
GRACE_S = 5.0
SECRET = "s3cret-token-value"
HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

Serve = Callable[..., ApiServer]


@pytest.fixture
def serve(live_server: StartServer, sqlite_services: Application) -> Serve:
    """Starts the real server with a given head timeout (and connection cap)."""

    def start(head_timeout_s: float, max_connections: int | None = None) -> ApiServer:
        return live_server(
            create_app(sqlite_services),
            head_timeout_s=head_timeout_s,
            max_connections=max_connections,
        )

    return start


def trickle_until_closed(sock: socket.socket, data: bytes, gap_s: float) -> bytes:
    """Sends ``data`` a byte every ``gap_s`` while the server has nothing to say, then
    reads what it says until it closes the connection."""
    deadline = time.monotonic() + TIMEOUT_S + GRACE_S
    for byte in data:
        if time.monotonic() > deadline:
            pytest.fail("the server let the head trickle in past its time limit")
        if select.select([sock], [], [], gap_s)[0]:
            break
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # closed under us
            break
    return read_until_closed(sock, GRACE_S)


def test_a_connection_that_sends_nothing_is_closed_after_the_timeout(serve: Serve) -> None:
    server = serve(TIMEOUT_S)
    with open_socket(server) as sock:
        opened = time.monotonic()
        received = read_until_closed(sock, TIMEOUT_S + GRACE_S)
        held_s = time.monotonic() - opened

    # Nothing was asked, so nothing is answered (a browser's spare connection).
    assert received == b""
    assert held_s >= TIMEOUT_S * 0.9
    # The server still answers.
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/health").status_code == 200


def test_a_head_sent_a_byte_at_a_time_gets_408_and_is_closed(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(TIMEOUT_S)
    head = (
        f"GET /api/patients?token={SECRET} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {SECRET}\r\n"
    ).encode()
    trickle = b"X-Slow: " + b"a" * 10_000
    with caplog.at_level(logging.DEBUG), open_socket(server) as sock:
        sock.sendall(head)
        received = trickle_until_closed(sock, trickle, gap_s=0.05)

    assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), received
    assert b"\r\nconnection: close\r\n" in received
    closed = [r for r in caplog.records if r.name == "ophthai_desktop.api.http_protocol"]
    assert len(closed) == 1
    assert "127.0.0.1" not in closed[0].getMessage()
    assert not [r for r in caplog.records if SECRET in r.getMessage()]


def test_the_408_is_the_usual_error_body_and_the_document_lists_it(serve: Serve) -> None:
    """A client reads the 408 as it reads every other error: JSON with ``message`` and
    ``detail``, as the OpenAPI document says for the route it was sending."""
    server = serve(TIMEOUT_S)
    with open_socket(server) as sock:
        sock.sendall(b"GET /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        received = read_until_closed(sock, TIMEOUT_S + GRACE_S)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received
    assert b"\r\ncontent-type: application/json\r\n" in head
    error = json.loads(body)
    assert error["message"] == error["detail"]
    assert "did not arrive in time" in error["message"]

    with httpx.Client(base_url=server.url) as http:
        document = http.get("/openapi.json").json()
    for path in ("/api/patients", "/api/jobs/{job_id}", "/health"):
        for operation in document["paths"][path].values():
            assert operation["responses"]["408"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/ErrorPublic"
            }, path


@pytest.mark.parametrize(
    ("origin", "allowed"), [("http://localhost:5173", True), ("http://evil.example", False)]
)
def test_a_408_carries_the_cors_headers_of_an_allowed_origin_that_arrived(
    serve: Serve, origin: str, allowed: bool
) -> None:
    """The head stalls after its ``Origin`` line: a page on an origin the app allows
    (``OPHTHAI_CORS_ORIGINS``) reads the 408; another origin is not let in by it."""
    server = serve(TIMEOUT_S)
    with open_socket(server) as sock:
        sock.sendall(
            f"GET /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\nX-Sl".encode()
        )
        received = read_until_closed(sock, TIMEOUT_S + GRACE_S)

    head = received.partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 408 "), received
    cors = {k: v for k, v in header_fields(head).items() if k.startswith("access-control-")}
    if allowed:
        assert cors["access-control-allow-origin"] == origin
        assert cors["access-control-allow-credentials"] == "true"
    else:
        assert cors == {}


def test_a_partial_second_head_on_a_kept_alive_connection_is_closed(serve: Serve) -> None:
    """uvicorn's keep-alive timer stops at the next request's first byte: the clock
    restarts after each response and runs until that head is complete."""
    server = serve(TIMEOUT_S)
    with open_socket(server) as sock:
        sock.sendall(HEALTH)
        head, _ = read_response(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.")
        received = read_until_closed(sock, TIMEOUT_S + GRACE_S)

    assert received.startswith(b"HTTP/1.1 408 "), received


def test_slow_heads_within_the_timeout_are_answered(serve: Serve) -> None:
    """Each head may take most of the limit; the clock restarts for each request."""
    timeout_s = 2.0
    server = serve(timeout_s)
    pieces = [HEALTH[i : i + 8] for i in range(0, len(HEALTH), 8)]
    gap_s = timeout_s * 0.6 / len(pieces)
    with open_socket(server) as sock:
        for _ in range(2):  # together longer than the limit
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(gap_s)
            head, body = read_response(sock)
            assert head.startswith(b"HTTP/1.1 200 "), head
            assert json.loads(body)["status"]


def test_a_head_past_the_size_limit_gets_431_before_it_ends(serve: Serve) -> None:
    """One header that never ends, sent fast: refused once it passes the limit, not
    held in memory until the head's time is up."""
    server = serve(10.0)
    with open_socket(server) as sock:
        sock.sendall(b"GET /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ")
        with contextlib.suppress(OSError):  # closed under us
            for _ in range(2 * MAX_HEAD_BYTES // 4096):
                sock.sendall(b"a" * 4096)
        received = read_until_closed(sock, 3.0)

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), received[:200]
    assert "larger than the limit of 64 KB" in json.loads(body)["message"]


def test_a_whole_head_past_the_size_limit_never_reaches_the_app(
    serve: Serve, sqlite_services: Application
) -> None:
    server = serve(10.0)
    lines = b"".join(b"X-Filler-%05d: %s\r\n" % (i, b"v" * 40) for i in range(2000))
    body = b'{"name": "Ada"}'
    with open_socket(server) as sock:
        sock.sendall(
            b"POST /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n"
            % len(body)
            + lines
            + b"\r\n"
            + body
        )
        received = read_until_closed(sock, GRACE_S)

    assert received.startswith(b"HTTP/1.1 431 "), received[:200]
    assert sqlite_services.patients.list_patients().total == 0


def test_a_head_past_the_limit_pipelined_behind_a_request_is_refused_after_its_answer(
    serve: Serve,
) -> None:
    """The requests before it on the connection are answered first, in order: the 431
    written at once was read by the client as the answer to the request before."""
    server = serve(10.0)
    big = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * MAX_HEAD_BYTES
    with open_socket(server) as sock:
        sock.sendall(HEALTH + HEALTH + big + b"\r\n\r\n")
        received = read_until_closed(sock, GRACE_S)

    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", received) == [b"200", b"200", b"431"], received


def test_the_servers_own_answers_carry_nosniff_as_the_apps_do(serve: Serve) -> None:
    """The 431 and the 408 are written without the app, whose middleware adds
    ``X-Content-Type-Options: nosniff`` to every other answer (README: every answer)."""
    server = serve(TIMEOUT_S)
    with open_socket(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * MAX_HEAD_BYTES)
        too_large = read_until_closed(sock, GRACE_S)
    with open_socket(server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.")
        too_slow = read_until_closed(sock, TIMEOUT_S + GRACE_S)

    for received, status in ((too_large, b"431"), (too_slow, b"408")):
        head = received.partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 " + status), received
        assert header_fields(head).get("x-content-type-options") == "nosniff", head


def test_large_bodies_and_heads_under_the_size_limit_are_answered(serve: Serve) -> None:
    """The limit counts the head only: a body many times its size, and the next request
    on the connection, are read as before; a head of 48 KB (many cookies) passes."""
    server = serve(10.0)
    body = b'{"name": "Ada"' + b" " * (4 * MAX_HEAD_BYTES) + b"}"
    cookies = "; ".join(f"c{i}={'v' * 90}" for i in range(520))
    with open_socket(server) as sock:
        sock.sendall(
            b"POST /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body
        )
        created, _ = read_response(sock)
        sock.sendall(
            f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookies}\r\n\r\n".encode()
        )
        health, _ = read_response(sock)

    assert len(cookies) > 48 * 1024
    assert created.startswith(b"HTTP/1.1 201 "), created
    assert health.startswith(b"HTTP/1.1 200 "), health


def test_a_websocket_left_idle_past_the_timeout_stays_open(serve: Serve) -> None:
    server = serve(TIMEOUT_S)
    url = server.url.replace("http://", "ws://") + "/api/notifications/ws"
    with connect(url, open_timeout=GRACE_S) as ws:
        assert json.loads(ws.recv(timeout=GRACE_S))["event"] == "connected"
        time.sleep(TIMEOUT_S * 3)
        ws.send("ping")
        assert json.loads(ws.recv(timeout=GRACE_S))["event"] == "pong"


def test_a_websocket_upgraded_on_a_kept_alive_connection_stays_open(serve: Serve) -> None:
    """The upgrade request ends like any request: the clock must not start for it."""
    server = serve(TIMEOUT_S)
    with open_socket(server) as sock:
        sock.sendall(HEALTH)
        read_response(sock)
        sock.sendall(
            b"GET /api/notifications/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        handshake = b""
        while b"\r\n\r\n" not in handshake:
            handshake += sock.recv(1)
        assert handshake.startswith(b"HTTP/1.1 101 "), handshake
        assert json.loads(read_frame(sock))["event"] == "connected"
        time.sleep(TIMEOUT_S * 3)
        sock.sendall(masked_text_frame(b"ping"))
        assert json.loads(read_frame(sock))["event"] == "pong"


def test_a_body_slower_than_the_timeout_is_still_read(serve: Serve) -> None:
    """The head arrives at once; the upload then takes several times the limit."""
    server = serve(TIMEOUT_S)
    noise = Image.frombytes("RGB", (256, 256), os.urandom(256 * 256 * 3))
    png = io.BytesIO()
    noise.save(png, "PNG")
    body = json.dumps(
        {
            "name": "Ada",
            "imageUrl": "data:image/png;base64," + base64.b64encode(png.getvalue()).decode(),
        }
    ).encode()
    parts = 4
    size = -(-len(body) // parts)

    def slowly() -> Iterator[bytes]:
        for start in range(0, len(body), size):
            time.sleep(TIMEOUT_S * 0.8)
            yield body[start : start + size]

    with httpx.Client(base_url=server.url, timeout=GRACE_S * 2) as http:
        response = http.post(
            "/api/patients", content=slowly(), headers={"Content-Type": "application/json"}
        )

    assert len(body) > 200_000
    assert response.status_code == 201, response.text
    assert response.json()["imageUrl"]


def test_a_body_still_arriving_after_an_early_answer_is_not_cut_off(serve: Serve) -> None:
    """A 404 goes out before the body is read; the client goes on sending the body,
    slowly, and then its next request. The clock starts only once the body has ended
    (closing earlier would also reset the connection under a client that has not read
    its answer yet)."""
    server = serve(TIMEOUT_S)
    pieces = 4
    with open_socket(server) as sock:
        sock.sendall(
            b"POST /api/no-such-thing HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Length: %d\r\n\r\n" % (pieces * 1024)
        )
        head, _ = read_response(sock)
        assert head.startswith(b"HTTP/1.1 404 "), head
        for _ in range(pieces):
            time.sleep(TIMEOUT_S * 0.8)
            sock.sendall(b"x" * 1024)
        sock.sendall(HEALTH)
        head, _ = read_response(sock)

    assert head.startswith(b"HTTP/1.1 200 "), head


def test_connections_beyond_the_cap_get_503_and_open_ones_go_on(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A client beyond the cap reads why it was refused (a 503 in the API's error shape,
    with Retry-After) rather than a reset it cannot tell from a crash."""
    cap = 3
    server = serve(30.0, max_connections=cap)
    url = server.url.replace("http://", "ws://") + "/api/notifications/ws"
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(connect(url, open_timeout=GRACE_S)) for _ in range(cap)]
        for ws in sockets:  # each is open on the server's side
            assert json.loads(ws.recv(timeout=GRACE_S))["event"] == "connected"

        with caplog.at_level(logging.DEBUG):
            with httpx.Client(base_url=server.url, timeout=GRACE_S) as http:
                refused = http.get("/api/patients")
            with open_socket(server) as sock:
                opened = time.monotonic()
                sock.sendall(HEALTH)
                received = read_until_closed(sock, GRACE_S)
                assert time.monotonic() - opened < GRACE_S / 2  # at once, not timed out
            with open_socket(server) as sock:  # nothing asked: nothing answered
                assert read_until_closed(sock, REFUSAL_LINGER_S + GRACE_S) == b""
            with pytest.raises(InvalidStatus) as handshake:
                connect(url, open_timeout=GRACE_S)
        refusals = [r for r in caplog.records if r.name == "ophthai_desktop.api.http_protocol"]
        assert [r.levelno for r in refusals] == [logging.WARNING] + [logging.DEBUG] * 3
        assert not [r for r in refusals if "127.0.0.1" in r.getMessage()]

        assert refused.status_code == 503
        error = refused.json()
        assert error["message"] == error["detail"]
        assert "too many connections" in error["message"]
        assert refused.headers["retry-after"] == str(REFUSAL_RETRY_AFTER_S)
        assert refused.headers["connection"] == "close"
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), received
        assert b"\r\ncontent-type: application/json\r\n" in head
        assert json.loads(body) == error
        assert handshake.value.response.status_code == 503

        for ws in sockets:
            ws.send("ping")
            assert json.loads(ws.recv(timeout=GRACE_S))["event"] == "pong"
        sockets.pop().close()
        # A freed place is taken again (once the server has seen the close).
        deadline = time.monotonic() + GRACE_S
        with httpx.Client(base_url=server.url) as http:
            while (status := http.get("/health").status_code) == 503:
                assert time.monotonic() < deadline, "the freed place was not taken again"
                time.sleep(0.05)
        assert status == 200


@pytest.mark.parametrize(
    ("origin", "allowed"), [("http://localhost:5173", True), ("http://evil.example", False)]
)
def test_the_503_beyond_the_cap_carries_the_cors_headers_of_an_allowed_origin(
    serve: Serve, origin: str, allowed: bool
) -> None:
    """A page on an origin the app allows reads "busy, try again" and when (Retry-After,
    exposed) instead of an opaque network error; another origin is not let in by it."""
    server = serve(30.0, max_connections=1)
    request = f"GET /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n\r\n"
    with open_socket(server) as held:
        held.sendall(HEALTH)  # the one place, kept alive
        assert read_response(held)[0].startswith(b"HTTP/1.1 200 ")
        # Opened only now: its wait for a request (REFUSAL_LINGER_S) must not run out
        # while a loaded machine answers the server's first request.
        with open_socket(server) as sock:
            opened = time.monotonic()
            sock.sendall(request.encode())
            received = read_until_closed(sock, GRACE_S)
            assert time.monotonic() - opened < REFUSAL_LINGER_S  # at once: the head had come

    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 "), received
    fields = header_fields(head)
    assert fields["retry-after"] == str(REFUSAL_RETRY_AFTER_S)
    assert "too many connections" in json.loads(body)["message"]
    cors = {k: v for k, v in fields.items() if k.startswith("access-control-")}
    if allowed:
        assert cors["access-control-allow-origin"] == origin
        assert cors["access-control-allow-credentials"] == "true"
        assert "Retry-After" in cors["access-control-expose-headers"].split(", ")
        assert fields["vary"] == "Origin"
    else:
        assert cors == {}


@pytest.mark.parametrize(
    ("origin", "status"), [("http://localhost:5173", 200), ("http://evil.example", 400)]
)
def test_a_preflight_beyond_the_cap_is_answered_as_the_app_would_then_its_request_503(
    serve: Serve, origin: str, status: int
) -> None:
    """A browser fails a preflight answered anything but 2xx and tells the page only
    "CORS error": the preflight gets the CORS middleware's answer (which does not depend
    on the load), so that the request after it gets the 503 the page can read."""
    server = serve(30.0, max_connections=1)
    preflight = (
        "OPTIONS /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Origin: {origin}\r\nAccess-Control-Request-Method: POST\r\n"
        "Access-Control-Request-Headers: content-type, authorization\r\n\r\n"
    )
    request = f"POST /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: {origin}\r\n\r\n"
    with open_socket(server) as held:
        held.sendall(HEALTH)  # the one place, kept alive
        assert read_response(held)[0].startswith(b"HTTP/1.1 200 ")
        with open_socket(server) as sock:
            opened = time.monotonic()
            sock.sendall(preflight.encode())
            answered = read_until_closed(sock, GRACE_S)
            assert time.monotonic() - opened < REFUSAL_LINGER_S  # at once: the head had come
        with open_socket(server) as sock:
            sock.sendall(request.encode())
            refused = read_until_closed(sock, GRACE_S)

    head, _, body = answered.partition(b"\r\n\r\n")
    fields = header_fields(head)
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), answered
    assert fields["connection"] == "close"
    if status == 200:
        assert fields["access-control-allow-origin"] == origin
        assert fields["access-control-allow-credentials"] == "true"
        assert fields["access-control-allow-methods"].split(", ").count("POST") == 1
        allowed = fields["access-control-allow-headers"].lower()
        assert "content-type" in allowed and "authorization" in allowed
        refused_head = refused.partition(b"\r\n\r\n")[0]
        assert refused_head.startswith(b"HTTP/1.1 503 "), refused
        assert header_fields(refused_head)["access-control-allow-origin"] == origin
    else:
        assert "access-control-allow-origin" not in fields
        assert json.loads(body)["message"].startswith("CORS preflight refused: this page's origin")


def test_a_refused_head_in_pieces_is_answered_once_it_ends_or_its_wait_does(
    serve: Serve,
) -> None:
    """A head that comes in several packets is answered with the CORS headers of the
    Origin line in its second; one that stalls is answered with what came of it once
    its wait is over."""
    server = serve(30.0, max_connections=1)
    origin = "http://localhost:5173"
    with open_socket(server) as held:
        held.sendall(HEALTH)  # the one place, kept alive
        assert read_response(held)[0].startswith(b"HTTP/1.1 200 ")
        # Opened only now: their wait for a request (REFUSAL_LINGER_S) is for the split
        # head's pieces, not for a loaded machine's answer to the server's first request.
        with open_socket(server) as split, open_socket(server) as stalled:
            split.sendall(b"GET /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r")
            stalled.sendall(f"GET / HTTP/1.1\r\nOrigin: {origin}\r\nX-Sl".encode())
            time.sleep(0.1)
            assert not select.select([split], [], [], 0)[0], "answered before its head ended"
            split.sendall(f"\nOrigin: {origin}\r\n\r".encode())
            time.sleep(0.1)
            split.sendall(b"\n")
            answers = [
                read_until_closed(sock, REFUSAL_LINGER_S + GRACE_S) for sock in (split, stalled)
            ]

    for received in answers:
        head = received.partition(b"\r\n\r\n")[0]
        assert head.startswith(b"HTTP/1.1 503 "), received
        assert header_fields(head)["access-control-allow-origin"] == origin


def test_a_refused_client_that_sends_its_upload_first_still_reads_the_503(
    serve: Serve,
) -> None:
    """The client sends its whole request before it reads: closed with that request
    unread, the socket would reset the connection and the 503 could be lost."""
    server = serve(30.0, max_connections=1)
    body = b"x" * 256 * 1024
    with open_socket(server) as held, open_socket(server) as sock:
        held.sendall(HEALTH)  # the one place, kept alive
        assert read_response(held)[0].startswith(b"HTTP/1.1 200 ")
        sock.sendall(
            b"POST /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        time.sleep(0.1)  # the answer has come, unread
        sock.sendall(body)
        received = read_until_closed(sock, GRACE_S)

    assert received.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), received


def test_refused_connections_wait_for_their_request_only_a_few_at_a_time(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flood beyond the cap must not hold the descriptors the cap keeps for the rest
    of the app: past the few refused connections kept to be answered, one is closed at
    once, and a place among those is free again once one of them has gone."""
    monkeypatch.setattr(http_protocol, "REFUSALS_LINGERING_AT_ONCE", 1)
    server = serve(30.0, max_connections=1)
    with open_socket(server) as held:
        held.sendall(HEALTH)  # the one place, kept alive
        assert read_response(held)[0].startswith(b"HTTP/1.1 200 ")
        with open_socket(server) as waiting, open_socket(server) as flood:
            opened = time.monotonic()
            assert read_until_closed(flood, GRACE_S) == b""
            assert time.monotonic() - opened < REFUSAL_LINGER_S / 2
            waiting.sendall(HEALTH)
            assert read_until_closed(waiting, GRACE_S).startswith(b"HTTP/1.1 503 ")
        deadline = time.monotonic() + GRACE_S
        while True:  # once the server has seen the waiting one go
            with open_socket(server) as later:
                with contextlib.suppress(OSError):
                    later.sendall(HEALTH)
                if read_until_closed(later, GRACE_S).startswith(b"HTTP/1.1 503 "):
                    break
            assert time.monotonic() < deadline, "no refused connection is answered again"
            time.sleep(0.05)


def test_stopping_the_server_closes_the_refused_connections_it_still_holds(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn's shutdown closes the connections it counts, which a refused one is not:
    one waiting for its request, or lingering after its 503, was left open (its timer
    with it) past ``stop()``, until the stopped loop was garbage-collected."""
    # Longer than the default: on a loaded machine the refused ones still wait (and
    # linger) when stop() comes, and a stop that waited for them stays apart from one
    # that did not.
    linger_s = REFUSAL_LINGER_S * 5
    monkeypatch.setattr(http_protocol, "REFUSAL_LINGER_S", linger_s)
    server = serve(30.0, max_connections=1)
    with open_socket(server) as held:
        held.sendall(HEALTH)  # the one place, kept alive
        assert read_response(held)[0].startswith(b"HTTP/1.1 200 ")
        with open_socket(server) as waiting, open_socket(server) as answered:
            answered.sendall(HEALTH)
            head, _ = read_response(answered)  # its 503; the client does not close
            assert head.startswith(b"HTTP/1.1 503 "), head

            stopping = time.monotonic()
            server.stop()
            stopped_s = time.monotonic() - stopping

            assert stopped_s < linger_s  # the lingering ones were not waited for
            protocol = server._config.http
            assert isinstance(protocol, type)
            assert issubclass(protocol, http_protocol.ApiHttpProtocol)
            assert not protocol._refused  # each seen gone: none is left counted
            for sock in (held, waiting, answered):
                # Closed by the time stop() returned: the end is there to read at once.
                assert select.select([sock], [], [], 0.1)[0], "still open after stop()"
                assert read_until_closed(sock, 0.1) == b""


def test_a_connection_refused_once_the_server_is_stopping_is_closed_at_once(
    serve: Serve,
) -> None:
    """One accepted just before the listening socket closed is refused after the
    shutdown has closed the others: it must not linger past the server's end either."""
    server = serve(30.0, max_connections=1)
    protocol = server._config.http
    assert isinstance(protocol, type) and issubclass(protocol, http_protocol.ApiHttpProtocol)
    loop = server._server.servers[0].get_loop()

    async def begin_shutdown() -> None:  # what the server's shutdown does first
        protocol.close_refused()

    with open_socket(server) as held:
        held.sendall(HEALTH)  # the one place, kept alive
        assert read_response(held)[0].startswith(b"HTTP/1.1 200 ")
        asyncio.run_coroutine_threadsafe(begin_shutdown(), loop).result(GRACE_S)
        with open_socket(server) as late:
            opened = time.monotonic()
            with contextlib.suppress(OSError):
                late.sendall(HEALTH)
            assert read_until_closed(late, GRACE_S) == b""
            assert time.monotonic() - opened < REFUSAL_LINGER_S / 2


def test_the_cap_leaves_half_the_file_descriptors_to_the_rest_of_the_app() -> None:
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        assert connection_cap() == 128
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
        assert connection_cap() == MAX_CONNECTIONS
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def read_frame(sock: socket.socket) -> bytes:
    """One unmasked frame from the server: its payload."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the WebSocket was closed"
            data += chunk
        return data

    _, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        length = int.from_bytes(exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(exactly(8), "big")
    return exactly(length)


def masked_text_frame(payload: bytes) -> bytes:
    """A client's text frame (clients must mask theirs)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked
