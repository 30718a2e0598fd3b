"""How the server behaves around the requests: which thread does database work, what a
client sees when the database fails, and the docs and health endpoints."""

from __future__ import annotations

import base64
import logging
import re
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Request, Response
from fastapi.testclient import TestClient
from sqlalchemy import event

from ophthai_desktop.api import create_app
from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.errors import StorageError
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.storage.models import Analysis
from tests.conftest import png_bytes
from tests.support.http import LoopbackClient
from tests.support.raw_http import StartServer

SECRET_NAME = "Philomena Cunegonde"

SEED_PATHS = {
    ("get", "/api/patients"),
    ("post", "/api/patients"),
    ("get", "/api/patients/{patient_id}"),
    ("patch", "/api/patients/{patient_id}"),
    ("delete", "/api/patients/{patient_id}"),
    ("post", "/api/patients/{patient_id}/validate"),
    ("post", "/api/patients/{patient_id}/schedule"),
    ("get", "/api/notifications"),
    ("post", "/api/notifications"),
    ("get", "/api/notifications/unread-count"),
    ("patch", "/api/notifications/{notification_id}/read"),
    ("patch", "/api/notifications/mark-all-read"),
    ("delete", "/api/notifications/{notification_id}"),
}


# Threads ---------------------------------------------------------------------------------


def requests_touching_every_service(pid: str) -> list[tuple[str, str, dict[str, Any]]]:
    today = date.today().isoformat()
    return [
        ("get", "/api/patients", {}),
        ("get", f"/api/patients/{pid}", {}),
        ("patch", f"/api/patients/{pid}", {"json": {"age": 50}}),
        ("get", f"/api/patients/{pid}/image", {}),
        ("get", f"/api/patients/{pid}/scans", {}),
        ("post", f"/api/patients/{pid}/validate?approved=true", {}),
        (
            "post",
            f"/api/patients/{pid}/schedule",
            {"json": {"appointmentDate": "2031-01-01T00:00:00Z"}},
        ),
        (
            "post",
            f"/api/patients/{pid}/oculomics",
            {"json": {"eye": "OD", "date": today, "iop": 15}},
        ),
        ("get", f"/api/patients/{pid}/oculomics", {}),
        ("post", "/api/notifications", {"json": {"message": "m", "patientId": pid}}),
        ("get", "/api/notifications/unread-count", {}),
        ("patch", "/api/notifications/mark-all-read", {}),
        ("get", "/api/audit", {}),
        ("delete", f"/api/patients/{pid}", {}),
    ]


def test_database_work_never_runs_on_the_event_loop_thread(
    sqlite_services: Application,
) -> None:
    app = create_app(sqlite_services)
    loop_threads: set[int] = set()
    sql_threads: set[int] = set()
    published_on: dict[str, set[int]] = {}

    @app.middleware("http")
    async def on_the_loop(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        loop_threads.add(threading.get_ident())
        return await call_next(request)

    def on_sql(*_args: Any) -> None:
        sql_threads.add(threading.get_ident())

    def on_event(published: ev.Event) -> None:
        published_on.setdefault(type(published).__name__, set()).add(threading.get_ident())

    event.listen(sqlite_services.db.engine, "before_cursor_execute", on_sql)
    unsubscribe = sqlite_services.bus.subscribe(on_event)
    try:
        with LoopbackClient(app) as client:
            image = base64.b64encode(png_bytes()).decode()
            pid = client.post("/api/patients", json={"name": "Ada", "imageUrl": image}).json()["id"]
            with sqlite_services.db.session() as session:
                session.add(Analysis(patient_id=pid, model_id="m", parse_status="parsed"))
            sql_threads.clear()  # that insert was test setup on this thread
            for method, path, kwargs in requests_touching_every_service(pid):
                assert client.request(method, path, **kwargs).is_success, path
    finally:
        unsubscribe()
        event.remove(sqlite_services.db.engine, "before_cursor_execute", on_sql)

    assert len(loop_threads) == 1
    assert sql_threads, "no SQL was seen"
    assert not sql_threads & loop_threads
    assert published_on["PatientCreated"]
    assert not published_on["PatientCreated"] & loop_threads
    assert not published_on["NotificationCreated"] & loop_threads
    assert threading.get_ident() not in loop_threads  # the loop really is elsewhere


# Database failures -----------------------------------------------------------------------


def server_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the server logged (the test client's own request log is left out)."""
    return "\n".join(
        f"{r.name}: {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith("httpx")
    )


@pytest.fixture
def failing_inserts(sqlite_services: Application) -> Iterator[None]:
    """The disk fails on every INSERT, as a full or broken disk would."""

    def fail(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT"):
            raise sqlite3.OperationalError("disk I/O error")

    event.listen(sqlite_services.db.engine, "before_cursor_execute", fail)
    yield
    event.remove(sqlite_services.db.engine, "before_cursor_execute", fail)


def test_a_failing_disk_is_a_503_and_the_log_names_no_patient(
    client: TestClient, failing_inserts: None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        response = client.post("/api/patients", json={"name": SECRET_NAME, "age": 80})

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/json")
    assert "database" in response.json()["detail"]
    assert any(r.levelno >= logging.ERROR for r in caplog.records)
    assert "Philomena" not in server_log(caplog)
    assert "Philomena" not in response.text


def test_a_lost_database_file_is_a_503(
    client: TestClient, sqlite_services: Application, caplog: pytest.LogCaptureFixture
) -> None:
    client.post("/api/patients", json={"name": SECRET_NAME})
    sqlite_services.db.dispose()
    for path in sqlite_services.settings.data_dir.glob("ophthai.db*"):
        path.unlink()

    with caplog.at_level(logging.DEBUG):
        listed = client.get("/api/patients", params={"search": SECRET_NAME})
        created = client.post("/api/patients", json={"name": SECRET_NAME})

    assert (listed.status_code, created.status_code) == (503, 503)
    assert isinstance(listed.json()["detail"], str)
    assert "database" in server_log(caplog)
    assert "Philomena" not in server_log(caplog)


def test_a_database_file_deleted_while_running_is_a_503_that_says_so(
    client: TestClient, sqlite_services: Application
) -> None:
    """Not a 201 written into the removed file, which vanishes at quit."""
    assert client.post("/api/patients", json={"name": SECRET_NAME}).status_code == 201
    path = Path(str(sqlite_services.db.url.database)).absolute()
    for companion in sqlite_services.settings.data_dir.glob("ophthai.db*"):
        companion.unlink()

    created = client.post("/api/patients", json={"name": SECRET_NAME})
    health = client.get("/api/ai/health")

    assert created.status_code == 503
    detail = created.json()["detail"]
    assert detail.startswith(f"the database file {path} was deleted or replaced while OphthAI ran")
    assert "put the file back" in detail and "start it again" in detail
    assert health.json()["database"] == "unavailable"
    assert not path.exists()  # no empty database created in its place


def test_a_storage_error_from_a_service_is_a_503(
    client: TestClient, sqlite_services: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    def locked(*_args: Any, **_kwargs: Any) -> None:
        raise StorageError("the database is locked; try again shortly")

    monkeypatch.setattr(sqlite_services.notifications, "unread_count", locked)

    response = client.get("/api/notifications/unread-count")

    assert response.status_code == 503
    message = "the database is locked; try again shortly"
    assert response.json() == {"detail": message, "message": message}


def test_a_record_deleted_by_another_request_meanwhile_is_a_409_not_a_503(
    client: TestClient, sqlite_services: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As when a notification for a patient is posted while the patient is deleted:
    its check passed, then its insert met the deleted row's foreign key."""

    def lost_the_race(*_args: Any, **_kwargs: Any) -> None:
        with sqlite_services.db.session() as session:
            session.add(m.Notification(message="x", type="info", patient_id="pt-gone"))

    monkeypatch.setattr(sqlite_services.notifications, "create_notification", lost_the_race)

    response = client.post("/api/notifications", json={"message": "x"})

    assert response.status_code == 409
    assert "changed or deleted by another request" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fields"),
    [
        ("get", "/api/no-such-thing", None, 404, None),  # Starlette's own 404
        ("put", "/api/patients", None, 405, None),
        ("get", "/api/patients/pt-missing", None, 404, None),  # the core's NotFound
        ("post", "/api/patients", {"name": "Ada", "age": 400}, 422, ["age"]),  # the core's
        ("post", "/api/patients", {"name": "Ada", "ageInYears": 4}, 422, ["ageInYears"]),
        ("patch", "/api/notifications/abc/read", None, 422, ["notification_id"]),  # FastAPI's
        ("post", "/api/patients", b"{not json", 422, [""]),
    ],
)
def test_every_error_body_has_a_message_and_every_422_its_list_of_problems(
    client: TestClient,
    method: str,
    path: str,
    body: Any,
    status: int,
    fields: list[str] | None,
) -> None:
    """One shape for clients to read, whichever layer refused the request."""
    if isinstance(body, bytes):
        response = client.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )
    else:
        response = client.request(method, path, json=body)

    assert response.status_code == status, response.text
    payload = response.json()
    assert isinstance(payload["message"], str) and payload["message"]
    assert "detail" in payload  # as FastAPI clients expect
    if fields is None:
        assert "errors" not in payload
    else:
        assert [error["field"] for error in payload["errors"]] == fields
        for error in payload["errors"]:
            assert set(error) == {"loc", "field", "msg", "type"}
            assert error["msg"] in payload["message"]


def test_an_unexpected_error_is_a_json_500(
    sqlite_services: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(sqlite_services.notifications, "unread_count", broken)

    with LoopbackClient(create_app(sqlite_services), raise_server_exceptions=False) as client:
        response = client.get("/api/notifications/unread-count")

    assert response.status_code == 500
    assert response.json()["detail"]
    assert "a bug" not in response.text


def test_an_unexpected_error_is_logged_without_its_text(
    sqlite_services: Application, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception's text can quote what it was given: pydantic's ``input_value``, a
    file name, a dictionary key. The log says what kind of error and where, not that."""

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise KeyError(SECRET_NAME)

    monkeypatch.setattr(sqlite_services.patients, "get_patient", broken)

    with (
        caplog.at_level(logging.DEBUG),
        LoopbackClient(create_app(sqlite_services), raise_server_exceptions=False) as client,
    ):
        response = client.get("/api/patients/pt-1")

    assert response.status_code == 500
    logged = server_log(caplog)
    assert "KeyError" in logged and "in broken" in logged  # what and where, for a fix
    assert "Philomena" not in logged


# Docs and health -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json", "/docs/", "/redoc/"])
def test_the_docs_are_served(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.content


@pytest.mark.parametrize(
    ("page", "needed"),
    [
        ("/docs", {"swagger-ui-bundle.js", "swagger-ui.css"}),
        ("/redoc", {"redoc.standalone.js"}),
    ],
)
def test_the_docs_pages_work_offline(client: TestClient, page: str, needed: set[str]) -> None:
    """A clinic workstation is often offline: everything a docs page loads comes from
    this server, and each of those files is really there."""
    html = client.get(page).text
    referenced = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)

    assert not [url for url in referenced if "//" in url]  # no CDN, no fonts service
    if page == "/docs":
        assert '"validatorUrl": null' in html  # Swagger UI's online badge is off
    assets = {url.rsplit("/", 1)[-1]: url for url in referenced}
    assert needed <= set(assets)
    for name in needed:
        served = client.get(assets[name])
        assert served.status_code == 200, name
        assert len(served.content) > 100_000, name  # the real bundle, not a stub
    schema_url = next(url for url in referenced if url.endswith("/openapi.json"))
    assert client.get(schema_url).json()["paths"]


def test_the_openapi_schema_lists_every_seed_endpoint_once(client: TestClient) -> None:
    paths: dict[str, dict[str, Any]] = client.get("/openapi.json").json()["paths"]

    documented = {(method, path) for path, methods in paths.items() for method in methods}

    assert documented >= SEED_PATHS
    assert not any(path.endswith("/") and path != "/" for path in paths)  # twins hidden


@pytest.mark.parametrize("path", ["/health", "/health/"])
def test_health(client: TestClient, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == "sqlite"
    assert body["version"]


# HEAD ------------------------------------------------------------------------------------


def _image_url() -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes((40, 30))).decode()


@pytest.fixture
def head_paths(client: TestClient) -> list[str]:
    """GET paths of each kind: liveness, the model, lists (gzipped: over 2 KB), one
    record with an ETag, an image file, counts, and a missing record."""
    for index in range(12):
        client.post("/api/patients", json={"name": f"Pat {index}", "history": "h" * 200})
    pid = client.post("/api/patients", json={"name": "Ada", "imageUrl": _image_url()}).json()["id"]
    client.post("/api/notifications", json={"message": "scan in", "patientId": pid})
    return [
        "/health",
        "/api/ai/health",
        "/api/patients",
        f"/api/patients/{pid}",
        f"/api/patients/{pid}/image",
        f"/api/patients/{pid}/scans",
        "/api/notifications",
        "/api/notifications/unread-count",
        "/api/patients/pt-missing",
        "/api/ai/load-model",  # POST only: 405 for GET, so for HEAD
    ]


def test_head_answers_as_get_does_without_the_body(
    client: TestClient, head_paths: list[str]
) -> None:
    for path in head_paths:
        got = client.get(path)
        head = client.head(path)

        assert head.status_code == got.status_code, path
        assert head.content == b"", path
        # The same headers; /health's body holds its uptime, so its length may differ.
        varying = {"content-length"} if path == "/health" else set()
        assert {k: v for k, v in head.headers.items() if k not in varying} == {
            k: v for k, v in got.headers.items() if k not in varying
        }, path
    listed = client.head("/api/patients")
    assert listed.headers["content-encoding"] == "gzip" and listed.headers["x-total-count"] == "13"


def test_head_through_the_real_server_has_the_get_s_length_and_no_body(
    sqlite_services: Application, live_server: StartServer
) -> None:
    server = live_server(create_app(sqlite_services))
    with httpx.Client(base_url=server.url, headers={"Accept-Encoding": "identity"}) as http:
        pid = http.post("/api/patients", json={"name": "Ada"}).json()["id"]
        for path in ("/api/ai/health", f"/api/patients/{pid}", "/api/notifications"):
            got = http.get(path)
            head = http.head(path)
            assert head.status_code == got.status_code == 200, path
            assert head.headers["content-length"] == str(len(got.content)), path
            assert head.content == b"", path
        # The connection is still usable after the bodiless answers.
        assert http.get("/health").status_code == 200
