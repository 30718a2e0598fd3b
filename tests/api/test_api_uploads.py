"""Multipart uploads that go wrong: each is refused saying what happened and what to
send instead, and nothing of it is stored (no scan, no image file, no patient)."""

from __future__ import annotations

import http.client
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from fastapi.testclient import TestClient

from ophthai_desktop.api import create_app
from ophthai_desktop.api.server import ApiServer
from ophthai_desktop.bootstrap import Application, build_application
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.settings import Settings
from tests.conftest import make_settings, png_bytes
from tests.support.raw_http import StartServer, open_socket, read_until_closed

BOUNDARY = "ophthai-upload-test"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
UPLOAD_ROUTES = ("scans", "analyze-upload")
ACTOR = Actor(who="test", via="api")


def part(name: str, data: bytes, filename: str | None = "scan.png") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
    if filename:
        head += "Content-Type: image/png\r\n"
    return head.encode() + b"\r\n" + data + b"\r\n"


def multipart(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def stored_files(settings: Settings) -> list[Path]:
    """Every file under the image store, the staging folder's included."""
    return [p for p in settings.images_dir.rglob("*") if p.is_file()]


def url(client: TestClient, route: str) -> str:
    if route == "analyze-upload":
        return "/api/ai/analyze-upload"
    pid = client.post("/api/patients", json={"name": "Ada"}).json()["id"]
    return f"/api/patients/{pid}/scans"


def nothing_stored(client: TestClient, settings: Settings) -> bool:
    patients = client.get("/api/patients").json()
    scans = [s for p in patients for s in client.get(f"/api/patients/{p['id']}/scans").json()]
    return scans == [] and stored_files(settings) == [] and len(patients) <= 1


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(len(f"--{BOUNDARY}--\r\n"), id="before-the-closing-boundary"),
        pytest.param(len(f"\r\n--{BOUNDARY}--\r\n") + 40, id="inside-the-file"),
    ],
)
def test_a_multipart_body_cut_off_is_a_400_that_says_so(
    client: TestClient, settings: Settings, route: str, cut: int
) -> None:
    """The parser stopped where the body stopped and gave the parts it had finished:
    the image was lost and the answer blamed the client ("file: Field required")."""
    body = multipart(part("file", png_bytes((40, 30))))
    target = url(client, route)

    response = client.post(target, content=body[:-cut], headers={"Content-Type": MULTIPART})

    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert "incomplete" in message and "closing boundary" in message
    assert "Field required" not in message
    assert nothing_stored(client, settings)


def test_a_body_cut_in_the_headers_of_its_part_is_a_400(
    client: TestClient, settings: Settings
) -> None:
    body = multipart(part("file", png_bytes((40, 30))))

    response = client.post(
        url(client, "scans"), content=body[:30], headers={"Content-Type": MULTIPART}
    )

    assert response.status_code == 400
    assert "closing boundary" in response.json()["message"]
    assert nothing_stored(client, settings)


def test_an_empty_multipart_body_says_it_is_empty(client: TestClient, settings: Settings) -> None:
    response = client.post(url(client, "scans"), content=b"", headers={"Content-Type": MULTIPART})

    assert response.status_code == 400
    assert response.json()["message"].startswith("the multipart body is empty")
    assert nothing_stored(client, settings)


def test_a_whole_body_with_an_epilogue_is_taken(client: TestClient) -> None:
    """RFC 2046 lets text follow the closing boundary; the check looks for the boundary,
    not for the body's last bytes."""
    body = multipart(part("file", png_bytes((40, 30)))) + b"an epilogue\r\n"

    response = client.post(url(client, "scans"), content=body, headers={"Content-Type": MULTIPART})

    assert response.status_code == 201, response.text


def test_a_closing_boundary_split_across_chunks_is_found(client: TestClient) -> None:
    body = multipart(part("file", png_bytes((40, 30))))

    def chunks() -> object:
        for i in range(0, len(body), 7):  # the delimiter arrives in two or three pieces
            yield body[i : i + 7]

    response = client.post(
        url(client, "scans"), content=chunks(), headers={"Content-Type": MULTIPART}
    )

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
def test_two_files_in_one_upload_are_a_422_not_the_last_one_taken(
    client: TestClient, settings: Settings, route: str
) -> None:
    """FastAPI takes the last value of a field sent twice: the first image was dropped
    without a word and the second filed (201)."""
    body = multipart(part("file", png_bytes((40, 30))), part("file", png_bytes((41, 30))))

    response = client.post(url(client, route), content=body, headers={"Content-Type": MULTIPART})

    assert response.status_code == 422, response.text
    assert response.json()["message"] == "file: 2 files sent; send one image per request"
    assert response.json()["errors"][0]["loc"] == ["body", "file"]
    assert nothing_stored(client, settings)


def test_a_form_field_sent_twice_with_different_values_is_a_422(
    client: TestClient, settings: Settings
) -> None:
    body = multipart(
        part("file", png_bytes((40, 30))),
        part("modality", b"OCT", filename=None),
        part("modality", b"fundus", filename=None),
    )

    response = client.post(url(client, "scans"), content=body, headers={"Content-Type": MULTIPART})

    assert response.status_code == 422
    assert response.json()["message"] == (
        "modality: given more than once, with different values; send it once"
    )
    assert nothing_stored(client, settings)


def test_a_form_field_sent_twice_alike_is_taken(client: TestClient) -> None:
    body = multipart(
        part("file", png_bytes((40, 30))),
        part("modality", b"OCT", filename=None),
        part("modality", b"OCT", filename=None),
    )

    response = client.post(url(client, "scans"), content=body, headers={"Content-Type": MULTIPART})

    assert response.status_code == 201, response.text
    assert response.json()["modality"] == "OCT"


@pytest.mark.parametrize(
    ("content_type", "body", "named"),
    [
        ("application/json", b'{"file": "scan.png"}', "application/json"),
        ("image/png", png_bytes((40, 30)), "image/png"),
        (None, b"", "a body without a Content-Type"),
    ],
)
@pytest.mark.parametrize("route", UPLOAD_ROUTES)
def test_an_upload_that_is_no_multipart_form_says_what_to_send(
    client: TestClient,
    settings: Settings,
    route: str,
    content_type: str | None,
    body: bytes,
    named: str,
) -> None:
    """It was "file: Field required": the client that posted the image's bytes, or
    JSON, was told a field was missing rather than that the body must be a form."""
    headers = {"Content-Type": content_type} if content_type else {}

    response = client.post(url(client, route), content=body, headers=headers)

    assert response.status_code == 422, response.text
    assert response.json()["message"] == (
        f"file: not sent: this endpoint takes a multipart/form-data body, not {named}"
    )
    assert response.json()["errors"][0]["loc"] == ["body", "file"]
    assert nothing_stored(client, settings)


@pytest.mark.parametrize("other_fields", [True, False], ids=["other-fields", "no-fields"])
@pytest.mark.parametrize("route", UPLOAD_ROUTES)
def test_a_form_without_a_file_says_to_send_the_image_in_the_field_file(
    client: TestClient, settings: Settings, route: str, other_fields: bool
) -> None:
    """It was pydantic's "file: Field required": a form that left the image out (its
    other fields only, or none) is told where the image goes."""
    other = "modality" if route == "scans" else "question"
    body = multipart(part(other, b"OCT", filename=None)) if other_fields else multipart()

    response = client.post(url(client, route), content=body, headers={"Content-Type": MULTIPART})

    assert response.status_code == 422, response.text
    assert response.json()["message"] == (
        "file: the form has no file: send the image in a multipart field named file "
        "(as curl -F 'file=@scan.png' sends it)"
    )
    assert response.json()["errors"][0]["loc"] == ["body", "file"]
    assert nothing_stored(client, settings)


def test_a_text_value_for_file_says_it_must_be_a_file(
    client: TestClient, settings: Settings
) -> None:
    as_text = multipart(part("file", b"scan.png", filename=None))
    target = url(client, "scans")

    in_multipart = client.post(target, content=as_text, headers={"Content-Type": MULTIPART})
    urlencoded = client.post(target, data={"file": "scan.png"})

    assert in_multipart.status_code == urlencoded.status_code == 422
    assert in_multipart.json()["message"] == (
        "file: must be a file (a part with a filename, as curl -F 'file=@scan.png' sends "
        "it), not text"
    )
    assert urlencoded.json()["message"] == (
        "file: must be a file, which an application/x-www-form-urlencoded body cannot "
        "carry: send multipart/form-data"
    )
    assert "class" not in in_multipart.text
    assert nothing_stored(client, settings)


#: An upload's file name holding a patient's name: it must not reach the log.
NAMED_FILE = "Quenneville Adalind OD.png"
#: Past Starlette's 1 MB kept in memory: the upload is spooled to a temporary file.
SPOOLED = b"\x89PNG\r\n\x1a\n" + os.urandom(2 * 1024 * 1024)


@pytest.fixture
def full_temporary_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The temporary folder full: a spooled upload moves to a file whose writes the
    kernel refuses with ENOSPC, as on a full disk (``/dev/full``)."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")

    def temporary_file(*_args: Any, **_kwargs: Any) -> IO[bytes]:
        return open("/dev/full", "w+b")  # the spool closes it

    monkeypatch.setattr(tempfile, "TemporaryFile", temporary_file)


@pytest.mark.parametrize("route", UPLOAD_ROUTES)
def test_an_upload_the_full_temporary_folder_cannot_hold_is_a_507_not_the_clients_fault(
    client: TestClient,
    settings: Settings,
    route: str,
    full_temporary_folder: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """It was a 400 telling the client to send JSON as UTF-8 text."""
    target = url(client, route)
    body = multipart(part("file", SPOOLED, NAMED_FILE))

    with caplog.at_level(logging.DEBUG):
        response = client.post(target, content=body, headers={"Content-Type": MULTIPART})

    assert response.status_code == 507, response.text
    message = response.json()["message"]
    assert "ran out of room" in message and "nothing was stored" in message
    assert response.json()["detail"] == message
    assert nothing_stored(client, settings)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["ophthai_desktop.api.errors"]
    assert "ENOSPC" in errors[0].getMessage()
    assert not [r for r in caplog.records if "Adalind" in r.getMessage()]


def test_an_upload_with_no_temporary_folder_to_go_to_is_a_500_saying_so(
    client: TestClient,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The temporary folder removed under the running app: a fault of the server too."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "removed"))
    target = url(client, "scans")
    body = multipart(part("file", SPOOLED, NAMED_FILE))

    with caplog.at_level(logging.DEBUG):
        response = client.post(target, content=body, headers={"Content-Type": MULTIPART})

    assert response.status_code == 500, response.text
    message = response.json()["message"]
    assert "temporary folder" in message and "nothing was stored" in message
    assert nothing_stored(client, settings)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["ophthai_desktop.api.errors"]
    assert "ENOENT" in errors[0].getMessage()
    said = [r.getMessage() for r in caplog.records]
    assert not [line for line in said if "Adalind" in line or "removed" in line]


def test_a_multipart_content_type_without_its_boundary_says_to_let_the_client_write_it(
    client: TestClient, settings: Settings
) -> None:
    """The usual mistake: a Content-Type set by hand for a FormData body."""
    body = multipart(part("file", png_bytes((40, 30))))

    response = client.post(
        url(client, "scans"), content=body, headers={"Content-Type": "multipart/form-data"}
    )

    assert response.status_code == 400
    assert response.json()["message"].startswith(
        "the Content-Type multipart/form-data names no boundary: let the HTTP client write"
    )
    assert nothing_stored(client, settings)


@pytest.fixture
def small_app(tmp_path: Path) -> Iterator[Application]:
    """Services whose request limit is 64 KiB."""
    application = build_application(make_settings(tmp_path, max_request_bytes=64 * 1024))
    yield application
    application.close()


def post_whole_body_then_read(server: ApiServer, path: str, body: bytes) -> tuple[int, bytes]:
    """As Python's http.client (and requests) do: the whole body sent, then the answer
    read."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers={"Content-Type": MULTIPART})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_a_huge_upload_gets_its_413_not_a_connection_reset(
    live_server: StartServer, small_app: Application
) -> None:
    """Refused by its Content-Length as it was being sent, the body was left unread and
    the connection closed: the socket reset it, and a client that sends the whole body
    before reading lost the 413 ("Connection reset by peer")."""
    server = live_server(create_app(small_app))
    pid = small_app.patients.create_patient({"name": "Ada"}, actor=ACTOR).id
    body = multipart(part("file", b"\0" * 48 * 1024 * 1024))

    status, answer = post_whole_body_then_read(server, f"/api/patients/{pid}/scans", body)

    assert status == 413
    assert json.loads(answer)["message"] == (
        "the request body is 50.3 MB; the limit is 65.5 KB (OPHTHAI_MAX_REQUEST_BYTES)"
    )
    assert not small_app.patients.list_scans(pid)


def test_a_huge_upload_waiting_for_100_continue_gets_its_413_and_the_close(
    live_server: StartServer, small_app: Application
) -> None:
    """Its body never comes (curl waits for 100 Continue past 1 MB): the connection ends
    after the 413 rather than waiting for it."""
    server = live_server(create_app(small_app))
    pid = small_app.patients.create_patient({"name": "Ada"}, actor=ACTOR).id
    head = (
        f"POST /api/patients/{pid}/scans HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: {MULTIPART}\r\nContent-Length: {50 * 1024 * 1024}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()

    with open_socket(server) as sock:
        sock.sendall(head)
        answer = read_until_closed(sock, 10)

    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"connection: close" in answer.lower()


def test_a_scan_the_full_image_store_cannot_keep_is_a_507_without_retry_after(
    client: TestClient, settings: Settings, full_image_store: None
) -> None:
    """It was a 503, the status of an outage that passes, though a full disk stays full
    until someone frees space; the temporary folder's full disk was already a 507."""
    target = url(client, "scans")
    body = multipart(part("file", png_bytes((32, 24)), NAMED_FILE))

    response = client.post(target, content=body, headers={"Content-Type": MULTIPART})

    assert response.status_code == 507, response.text
    assert "Retry-After" not in response.headers
    assert "No space left on device" in response.json()["message"]
    assert nothing_stored(client, settings)
