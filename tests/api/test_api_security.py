"""Access control and limits: the API token, CORS and request/image size limits."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketDenialResponse
from starlette.websockets import WebSocketDisconnect

from ophthai_desktop.api import create_app
from ophthai_desktop.api.server import RedactTokens, redact_tokens_in_uvicorn_logs
from ophthai_desktop.bootstrap import Application, build_application
from tests.conftest import make_settings, png_bytes
from tests.support.crash import crash_lines
from tests.support.http import LoopbackClient
from tests.support.raw_http import StartServer, open_socket, read_response

TOKEN = "x" * 24
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def serve(tmp_path: Path, **overrides: Any) -> Iterator[TestClient]:
    application = build_application(make_settings(tmp_path, **overrides))
    try:
        with LoopbackClient(create_app(application)) as client:
            yield client
    finally:
        application.close()


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TestClient]:
    """An API that requires the token."""
    yield from serve(tmp_path, api_token=TOKEN)


@pytest.fixture
def small(tmp_path: Path) -> Iterator[TestClient]:
    """An API with a 2 KiB request limit and a 1 KiB image limit."""
    yield from serve(tmp_path, max_request_bytes=2048, max_image_bytes=1024)


# The token -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/patients"),
        ("post", "/api/patients"),
        ("get", "/api/patients/p1"),
        ("get", "/api/patients/p1/image"),
        ("get", "/api/notifications"),
        ("get", "/api/notifications/unread-count"),
        ("patch", "/api/notifications/mark-all-read"),
        ("get", "/api/audit"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": TOKEN}],
    ids=["none", "wrong", "not-bearer"],
)
def test_rest_without_the_token_is_401(
    guarded: TestClient, method: str, path: str, headers: dict[str, str]
) -> None:
    response = guarded.request(method, path, headers=headers, json={"name": "Ada"})

    assert response.status_code == 401
    assert "token" in response.json()["detail"]
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_rest_with_the_token_works(guarded: TestClient) -> None:
    created = guarded.post("/api/patients", json={"name": "Ada"}, headers=BEARER)
    listed = guarded.get("/api/patients", headers=BEARER)

    assert created.status_code == 201
    assert listed.status_code == 200 and len(listed.json()) == 1
    assert guarded.get("/api/patients").status_code == 401


def test_the_query_token_is_not_enough_for_rest(guarded: TestClient) -> None:
    response = guarded.get("/api/patients", params={"token": TOKEN})

    assert response.status_code == 401
    # The client sent the right token, in the wrong place: the answer says where it goes,
    # rather than that a token is required as though none had come.
    assert "?token= is taken only by image URLs and the WebSocket" in response.json()["message"]
    assert "Authorization header" in response.json()["message"]


@pytest.mark.parametrize("header", [TOKEN, f"Token {TOKEN}", "Bearer", "Basic eDp4"])
def test_a_token_without_the_bearer_scheme_is_told_so(guarded: TestClient, header: str) -> None:
    response = guarded.get("/api/patients", headers={"Authorization": header})

    assert response.status_code == 401
    assert response.json()["message"].endswith("the Authorization header must read Bearer <token>")


def test_a_missing_or_wrong_token_is_told_how_to_send_it(guarded: TestClient) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}):
        response = guarded.get("/api/patients", headers=headers)
        assert response.json()["message"] == (
            "a valid API token is required (Authorization: Bearer <token>)"
        )
    image = guarded.get("/api/patients/p1/image", headers={"Authorization": TOKEN})
    assert image.json()["message"] == (
        "a valid API token is required (Authorization: Bearer <token> or ?token=); "
        "the Authorization header must read Bearer <token>"
    )


def test_image_urls_accept_the_query_token_for_browsers(guarded: TestClient) -> None:
    image = png_bytes()
    created = guarded.post(
        "/api/patients",
        json={"name": "Ada", "imageUrl": base64.b64encode(image).decode()},
        headers=BEARER,
    ).json()

    assert guarded.get(created["imageUrl"]).status_code == 401
    assert guarded.get(created["imageUrl"], params={"token": TOKEN}).content == image
    assert guarded.get(created["imageUrl"], headers=BEARER).content == image
    rendition = created["imageUrl"] + "&format=png&max_side=8"
    assert guarded.get(rendition).status_code == 401
    assert guarded.get(rendition + f"&token={TOKEN}").headers["content-type"] == "image/png"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("post", "/api/patients", {"content": b"{not json"}),
        ("post", "/api/patients", {"content": '{"name": "Ada"}'.encode("utf-16")}),
        ("post", "/api/patients?unknown=1", {"json": {"name": "Ada"}}),
        ("get", "/api/patients?order_by=name&orderBy=age", {}),
        ("get", "/api/patients/p1/image?unknown=1", {}),
        ("post", "/api/ai/analyze", {"content": b"[1, 2"}),
    ],
    ids=["bad-json", "utf-16", "unknown-query", "repeat-query", "image-query", "ai"],
)
def test_a_request_without_the_token_is_refused_before_its_query_and_body_are_read(
    guarded: TestClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    """FastAPI reads a route's body before its dependencies: the guard must come first,
    so that a client without the token learns nothing from how its request was wrong."""
    if "content" in kwargs:
        kwargs["headers"] = {"Content-Type": "application/json"}

    response = guarded.request(method, path, **kwargs)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_foreign_web_page_is_refused_before_its_body_is_read(client: TestClient) -> None:
    response = client.post(
        "/api/patients",
        content=b"name=Ada",
        headers={"Origin": "http://evil.example", "Content-Type": "application/json"},
    )

    assert response.status_code == 403


def test_a_body_without_the_token_is_not_waited_for(
    tmp_path: Path, live_server: StartServer
) -> None:
    """On the real server: a request without the token that announces a large body and
    sends none is answered 401 at once; it does not hold the connection for its body."""
    application = build_application(make_settings(tmp_path, api_token=TOKEN))
    try:
        server = live_server(create_app(application), body_timeout_s=20)
        with open_socket(server) as sock:
            sock.sendall(
                b"POST /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{"
            )
            sock.settimeout(5)
            head, body = read_response(sock)
    finally:
        application.close()

    assert head.split(b"\r\n")[0] == b"HTTP/1.1 401 Unauthorized"
    assert b"token" in body


def test_health_needs_no_token(guarded: TestClient) -> None:
    response = guarded.get("/health")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_a_websocket_without_the_token_is_refused_with_401(guarded: TestClient) -> None:
    with pytest.raises(WebSocketDenialResponse) as refused:  # noqa: SIM117
        with guarded.websocket_connect("/api/notifications/ws"):
            pass

    assert refused.value.status_code == 401
    assert "token" in refused.value.json()["detail"]
    # HTTP's 401 names the scheme to use (RFC 9110 §11.6.1), as the REST routes' does.
    assert refused.value.headers["www-authenticate"] == "Bearer"


def test_a_websocket_with_a_wrong_token_is_refused(guarded: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as refused:  # noqa: SIM117
        with guarded.websocket_connect("/api/notifications/ws?token=nope"):
            pass

    assert isinstance(refused.value, WebSocketDenialResponse)
    assert refused.value.status_code == 401
    assert refused.value.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("how", ["query", "header"])
def test_a_websocket_with_the_token_receives_frames(guarded: TestClient, how: str) -> None:
    url, headers = "/api/notifications/ws", {}
    if how == "query":
        url += f"?token={TOKEN}"
    else:
        headers = BEARER

    with guarded.websocket_connect(url, headers=headers) as socket:
        assert socket.receive_json()["event"] == "connected"
        guarded.post("/api/notifications", json={"message": "hello"}, headers=BEARER)
        frame = socket.receive_json()

    assert frame["event"] == "notification"
    assert frame["data"]["message"] == "hello"


# CORS ------------------------------------------------------------------------------------


def test_cors_preflight_from_an_allowed_origin(client: TestClient) -> None:
    origin = "http://localhost:5173"

    response = client.options(
        "/api/patients",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,authorization",
        },
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == origin
    assert "POST" in response.headers["access-control-allow-methods"]


def test_cors_preflight_from_another_origin_is_not_allowed(client: TestClient) -> None:
    """Refused with the status Starlette gives it (400), and the API's JSON error body
    rather than Starlette's plain-text "Disallowed CORS origin"."""
    response = client.options(
        "/api/patients",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"},
    )

    assert "access-control-allow-origin" not in response.headers
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert error["message"] == error["detail"]
    assert error["message"] == (
        "CORS preflight refused: this page's origin is not one OPHTHAI_CORS_ORIGINS allows"
    )
    assert response.headers["vary"].startswith("Origin")  # as Starlette sends it
    assert response.headers["x-content-type-options"] == "nosniff"


def test_cors_origins_come_from_the_settings(tmp_path: Path) -> None:
    for client in serve(tmp_path, cors_origins=["http://clinic.lan:8080"]):
        allowed = client.get("/api/patients", headers={"Origin": "http://clinic.lan:8080"})
        default = client.get("/api/patients", headers={"Origin": "http://localhost:3000"})

        assert allowed.headers["access-control-allow-origin"] == "http://clinic.lan:8080"
        exposed = allowed.headers["access-control-expose-headers"].split(", ")
        # Page totals, If-Match, and where a created record is.
        assert {"X-Total-Count", "ETag", "Location"} <= set(exposed)
        assert "access-control-allow-origin" not in default.headers


def test_a_websocket_from_a_foreign_web_page_is_refused(client: TestClient) -> None:
    """CORS does not cover WebSockets: any site could otherwise read the stream."""
    with pytest.raises(WebSocketDenialResponse) as refused:  # noqa: SIM117
        with client.websocket_connect(
            "/api/notifications/ws", headers={"Origin": "http://evil.example"}
        ):
            pass

    assert refused.value.status_code == 403
    assert "OPHTHAI_CORS_ORIGINS" in refused.value.json()["detail"]


@pytest.mark.parametrize("origin", ["http://localhost:3000", "http://127.0.0.1"])
def test_a_websocket_from_an_allowed_or_own_page_connects(client: TestClient, origin: str) -> None:
    with client.websocket_connect("/api/notifications/ws", headers={"Origin": origin}) as socket:
        assert socket.receive_json()["event"] == "connected"


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("post", "/api/patients", {"json": {"name": "Mallory"}}),
        ("post", "/api/patients/{pid}/validate?approved=true", {}),
        ("post", "/api/patients/{pid}/schedule?appointment_date=2030-01-01T10:00:00Z", {}),
        ("delete", "/api/patients/{pid}", {}),
        ("patch", "/api/notifications/mark-all-read", {}),
    ],
)
def test_changes_from_a_foreign_web_page_are_refused(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    """A cross-site form POST needs no preflight; the server itself must refuse it."""
    pid = client.post("/api/patients", json={"name": "Ada"}).json()["id"]
    client.post("/api/notifications", json={"message": "unread"})
    before = client.get(f"/api/patients/{pid}").json()

    response = client.request(
        method, path.format(pid=pid), headers={"Origin": "http://evil.example"}, **kwargs
    )

    assert response.status_code == 403
    assert client.get("/api/patients").headers["X-Total-Count"] == "1"
    assert client.get(f"/api/patients/{pid}").json() == before
    assert client.get("/api/notifications/unread-count").json() == {"count": 1}


def test_changes_from_an_allowed_web_page_work(client: TestClient) -> None:
    response = client.post(
        "/api/patients", json={"name": "Ada"}, headers={"Origin": "http://localhost:3000"}
    )

    assert response.status_code == 201
    assert response.headers["access-control-allow-origin"] == "http://localhost:3000"


# Response headers ------------------------------------------------------------------------


def test_patient_data_is_not_stored_by_the_browser_nor_sniffed(client: TestClient) -> None:
    """JSON carrying patient data (and errors, which may echo what was sent) is
    ``no-store``: a shared workstation's browser cache would keep it on disk."""
    pid = client.post("/api/patients", json={"name": "Ada"}).json()["id"]

    answers = [
        client.get("/api/patients"),
        client.get(f"/api/patients/{pid}"),
        client.head(f"/api/patients/{pid}"),
        client.get("/api/patients/nobody"),
        client.get("/api/audit"),
        client.post("/api/patients", json={"name": "Ada", "unknown": "<script>"}),
    ]

    for answer in answers:
        assert answer.headers["cache-control"] == "no-store", answer.request.url
        assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url


def test_refusals_are_not_sniffed_nor_stored(guarded: TestClient, client: TestClient) -> None:
    refused = [
        guarded.get("/api/patients"),
        client.get("/api/patients", headers={"Host": "rebound.example"}),
    ]

    for answer in refused:
        assert answer.status_code in (401, 403)
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_a_refused_websocket_handshake_is_not_sniffed_nor_stored(guarded: TestClient) -> None:
    """The handshake's 401 is an HTTP answer with a JSON body like the others (the
    middleware looked at ``http`` requests only)."""
    with pytest.raises(WebSocketDenialResponse) as refused:  # noqa: SIM117
        with guarded.websocket_connect("/api/notifications/ws"):
            pass

    assert refused.value.status_code == 401
    assert refused.value.headers["x-content-type-options"] == "nosniff"
    assert refused.value.headers["cache-control"] == "no-store"


def test_images_keep_their_own_cache_lifetime_and_are_not_sniffed(client: TestClient) -> None:
    created = client.post(
        "/api/patients", json={"name": "Ada", "imageUrl": base64.b64encode(png_bytes()).decode()}
    ).json()

    versioned = client.get(created["imageUrl"])
    bare = client.get(f"/api/patients/{created['id']}/image")

    assert versioned.headers["cache-control"] == "private, max-age=86400, immutable"
    assert bare.headers["cache-control"] == "private, no-cache"
    assert versioned.headers["x-content-type-options"] == "nosniff"
    assert client.get("/docs").headers["x-content-type-options"] == "nosniff"


# Size limits -----------------------------------------------------------------------------


def test_a_body_over_the_limit_with_content_length_is_413(small: TestClient) -> None:
    response = small.post("/api/patients", json={"name": "Ada", "history": "x" * 4000})

    assert response.status_code == 413
    assert "2.0 KB" in response.json()["detail"]
    assert small.get("/api/patients").json() == []


def test_a_chunked_body_over_the_limit_is_413(small: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": "Ada", "history": "'
        for _ in range(8):
            yield b"x" * 512
        yield b'"}'

    response = small.post(
        "/api/patients", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert "2.0 KB" in response.json()["message"]  # refused mid-stream, same body shape
    assert small.get("/api/patients").json() == []


def test_a_chunked_body_under_the_limit_is_accepted(small: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"name": '
        yield b'"Ada"}'

    response = small.post(
        "/api/patients", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 201


def test_an_upload_over_the_request_limit_is_413(small: TestClient) -> None:
    pid = small.post("/api/patients", json={"name": "Ada"}).json()["id"]

    response = small.post(
        f"/api/patients/{pid}/scans", files={"file": ("big.png", os.urandom(4096), "image/png")}
    )

    assert response.status_code == 413
    assert small.get(f"/api/patients/{pid}/scans").json() == []


def test_an_upload_over_the_request_limit_gives_its_size(small: TestClient) -> None:
    """Its Content-Length says it (40,000 bytes of image and the form around them): the
    413 gives the upload's real size, as the README says (it was "larger than the limit
    of 2.0 KB" whatever the size)."""
    pid = small.post("/api/patients", json={"name": "Ada"}).json()["id"]

    response = small.post(
        f"/api/patients/{pid}/scans", files={"file": ("big.png", os.urandom(40_000), "image/png")}
    )

    assert response.status_code == 413
    assert response.json()["message"] == (
        "the request body is 40.2 KB; the limit is 2.0 KB (OPHTHAI_MAX_REQUEST_BYTES)"
    )


def test_a_chunked_upload_over_the_request_limit_is_413(small: TestClient) -> None:
    pid = small.post("/api/patients", json={"name": "Ada"}).json()["id"]
    boundary = "ophthai-test-boundary"

    def chunks() -> Iterator[bytes]:
        yield (
            f"--{boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        for _ in range(8):
            yield os.urandom(512)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = small.post(
        f"/api/patients/{pid}/scans",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )

    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert small.get(f"/api/patients/{pid}/scans").json() == []


def test_an_image_over_the_image_limit_is_413(small: TestClient) -> None:
    pid = small.post("/api/patients", json={"name": "Ada"}).json()["id"]
    too_big = os.urandom(1500)  # under the request limit, over the image limit

    as_upload = small.post(
        f"/api/patients/{pid}/scans", files={"file": ("big.png", too_big, "image/png")}
    )
    as_data_url = small.post(
        "/api/patients",
        json={
            "name": "Bob",
            "imageUrl": "data:image/png;base64," + base64.b64encode(too_big).decode(),
        },
    )

    assert as_upload.status_code == 413
    assert as_data_url.status_code == 413
    # The real size, although only the limit's worth was read.
    assert as_upload.json()["message"].endswith(
        "the image is 1.5 KB; the limit is 1.0 KB (OPHTHAI_MAX_IMAGE_BYTES)"
    )
    assert as_upload.json()["field"] == "file"
    assert small.get(f"/api/patients/{pid}/scans").json() == []
    assert small.get("/api/patients").headers["X-Total-Count"] == "1"


def test_without_a_token_only_loopback_hosts_are_answered(client: LoopbackClient) -> None:
    """A rebinding page at evil.example (resolved to 127.0.0.1) gets nothing."""
    for host in ("evil.example", "evil.example:8000", "192.168.1.20:8000"):
        response = client.get("/api/patients", headers={"host": host})
        assert response.status_code == 403, host
        assert "OPHTHAI_API_TOKEN" in response.json()["message"]
    for name, port in (("localhost", ":8000"), ("127.0.0.1", ""), ("[::1]", ":8000")):
        host = name + port
        assert client.get("/api/patients", headers={"host": host}).status_code == 200, host
        assert name in response.json()["message"]  # the refusal names each name answered


def test_with_a_token_any_host_is_answered_with_the_token(tmp_path: Path) -> None:
    application = build_application(make_settings(tmp_path, api_token="t" * 24))
    try:
        with LoopbackClient(create_app(application)) as token_client:
            response = token_client.get(
                "/api/patients",
                headers={
                    "host": "workstation.clinic.lan:8000",
                    "authorization": "Bearer " + "t" * 24,
                },
            )
            assert response.status_code == 200
    finally:
        application.close()


@pytest.mark.parametrize(
    ("line", "redacted"),
    [
        ("/api/notifications/ws?token=s3cret", "/api/notifications/ws?token=[redacted]"),
        ("/api/x?limit=2&token=s3cret&skip=1", "/api/x?limit=2&token=[redacted]&skip=1"),
        ("/api/x?TOKEN=s3cret", "/api/x?TOKEN=[redacted]"),
        ("/api/x?mytoken=keep", "/api/x?mytoken=keep"),
        # Keys the server decodes as ``token`` (percent-escapes), as sent.
        ("/api/notifications/ws?tok%65n=s3cret", "/api/notifications/ws?tok%65n=[redacted]"),
        ("/api/x?%74%6F%6B%65%6E=s3cret&v=1", "/api/x?%74%6F%6B%65%6E=[redacted]&v=1"),
        ("/api/x?%54OKEN=s3cret", "/api/x?%54OKEN=[redacted]"),
        ("/api/x?+token+=s3cret", "/api/x?+token+=[redacted]"),
        ("/api/x?token=a&token=s3cret", "/api/x?token=[redacted]&token=[redacted]"),
        ("/api/x?token=s3+cr%2Bet%3D=&v=1", "/api/x?token=[redacted]&v=1"),
        ("/api/x?to%6Bens=keep&v=token", "/api/x?to%6Bens=keep&v=token"),
    ],
)
def test_tokens_in_logged_request_lines_are_redacted(line: str, redacted: str) -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" %s',
        ("127.0.0.1:5000", line, "[accepted]"),
        None,
    )

    assert RedactTokens().filter(record)

    assert record.getMessage() == f'127.0.0.1:5000 - "WebSocket {redacted}" [accepted]'


@pytest.mark.parametrize(
    ("args", "redacted"),
    [
        # The WebSocket library's handshake lines at DEBUG (through uvicorn.error).
        (("< %s: %s", "authorization", "Bearer s3cret"), "< authorization: [redacted]"),
        (("< %s: %s", "Authorization", "bearer  s3cret"), "< Authorization: [redacted]"),
        (
            ("< %s %s %s", "GET", "/ws?tok%65n=s3cret", "HTTP/1.1"),
            "< GET /ws?tok%65n=[redacted] HTTP/1.1",
        ),
        # A token sent as a WebSocket subprotocol, in the handshake's headers and the scope.
        (
            ("< %s: %s", "Sec-WebSocket-Protocol", "ophthai.v1, bearer.s3cret"),
            "< Sec-WebSocket-Protocol: ophthai.v1, bearer.[redacted]",
        ),
        (
            ("Started scope=%s", {"subprotocols": ["ophthai.v1", "bearer.s3cret"]}),
            "Started scope={'subprotocols': ['ophthai.v1', 'bearer.[redacted]']}",
        ),
        # uvicorn's trace of a request's scope (its query string is bytes).
        (
            ("Started scope=%s", {"path": "/ws", "query_string": b"v=1&tok%65n=s3cret"}),
            "Started scope={'path': '/ws', 'query_string': b'v=1&tok%65n=[redacted]'}",
        ),
    ],
)
def test_tokens_in_any_logged_form_are_redacted(args: tuple[Any, ...], redacted: str) -> None:
    msg, *values = args
    record = logging.LogRecord("uvicorn.asgi", 5, __file__, 1, msg, tuple(values), None)

    assert RedactTokens().filter(record)

    assert record.getMessage() == redacted
    assert "s3cret" not in record.getMessage()


def test_uvicorn_loggers_that_quote_requests_are_all_filtered() -> None:
    redact_tokens_in_uvicorn_logs()
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        assert any(isinstance(f, RedactTokens) for f in logging.getLogger(name).filters), name


@pytest.mark.parametrize(
    ("query", "redacted"),
    [
        (b"search=Zorblax+Quimby&limit=50", b"search=[redacted]&limit=50"),
        (b"limit=50&Se%61rch=Zorblax", b"limit=50&Se%61rch=[redacted]"),
        (b"researcher=keep", b"researcher=keep"),
    ],
)
def test_a_patient_search_in_a_traced_request_is_redacted(query: bytes, redacted: bytes) -> None:
    # At OPHTHAI_LOG_LEVEL=NOTSET uvicorn traces each request's scope: a search of the
    # patient list is a name.
    scope = {"path": "/api/patients", "query_string": query}
    record = logging.LogRecord("uvicorn.asgi", 5, __file__, 1, "Started scope=%s", (scope,), None)

    assert RedactTokens().filter(record)

    assert record.getMessage() == f"Started scope={ {**scope, 'query_string': redacted}!r}"


def test_a_route_that_fails_unexpectedly_is_logged_without_its_text(
    tmp_path: Path,
    live_server: StartServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """On the real server: the app logs the error's kind and place, then Starlette raises
    it again for the server, and uvicorn logged it as "Exception in ASGI application"
    with Python's traceback and the error's text (a patient's name it quoted)."""
    application = build_application(make_settings(tmp_path))

    def fails(*_args: Any, **_kwargs: Any) -> None:
        raise ValueError("history: Zorblax Quimby, glaucoma")

    monkeypatch.setattr(application.patients, "list_patients", fails)
    try:
        server = live_server(create_app(application))
        with caplog.at_level(logging.INFO), open_socket(server) as sock:
            sock.sendall(b"GET /api/patients HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head, _ = read_response(sock)
            # uvicorn logs the error after the 500 has gone out: the answer can be read
            # before its line is written.
            deadline = time.monotonic() + 5.0
            while not any(r.name == "uvicorn.error" for r in caplog.records):
                assert time.monotonic() < deadline, "uvicorn logged no error"
                time.sleep(0.01)
    finally:
        application.close()

    assert head.startswith(b"HTTP/1.1 500 ")
    assert "Zorblax" not in caplog.text
    assert "Traceback" not in caplog.text
    logged = [r.getMessage() for r in caplog.records if r.name == "uvicorn.error"]
    assert any("ValueError at" in line and "in fails" in line for line in logged), logged
    assert crash_lines(caplog.text)  # the end-to-end tests still see the crash


def test_a_task_that_fails_on_the_servers_loop_is_logged_without_its_text(
    sqlite_services: Application, live_server: StartServer, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncio logs a task's exception nobody retrieved ("Task exception was never
    retrieved") with Python's traceback, and a second line naming the task by its repr,
    which quotes the exception's text: the server's own loop writes it as uvicorn's."""
    server = live_server(create_app(sqlite_services))
    loop = server._server.servers[0].get_loop()

    async def fails() -> None:
        raise ValueError("history: Zorblax Quimby, glaucoma")

    async def drop_a_failing_task() -> None:
        task = asyncio.get_running_loop().create_task(fails())
        await asyncio.wait([task])  # it has run and failed (nothing retrieves it)
        del task
        gc.collect()  # asyncio logs its exception once the task is gone

    with caplog.at_level(logging.INFO):
        asyncio.run_coroutine_threadsafe(drop_a_failing_task(), loop).result(30.0)

    assert "Zorblax" not in caplog.text and "glaucoma" not in caplog.text
    assert "Traceback" not in caplog.text
    logged = [r for r in caplog.records if r.name == "asyncio"]
    assert [r.levelno for r in logged] == [logging.ERROR]
    message = logged[0].getMessage()
    assert message.startswith("Task exception was never retrieved: ValueError at "), message
    assert message.endswith(" in fails")
    assert crash_lines(caplog.text)  # the end-to-end tests still see the crash
