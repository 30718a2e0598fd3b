"""The served OpenAPI document matches the API: real responses, errors included, are
validated against the schema it gives for their route and status (a status it does not
list fails), and it declares how to send the token."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator

from ophthai_desktop.api import create_app
from ophthai_desktop.bootstrap import Application, build_application
from tests.api.test_api_patients import add_analysis
from tests.conftest import make_settings
from tests.support.http import LoopbackClient
from tests.support.images import png_bytes
from tests.support.outage import database_writes_refused
from tests.support.scripted_engine import ScriptedEngine

TOKEN = "t" * 24
#: Keywords pydantic knows but JSON Schema does not (a tool reading the document
#: ignores them, so the bounds they carry are lost).
PYDANTIC_ONLY = frozenset({"ge", "le", "gt", "lt", "min_length", "max_length", "multiple_of"})
#: Headers of the API's own that a client reads: each response sending one must declare
#: it (a generated client only exposes declared headers).
OWN_HEADERS = ("X-Total-Count", "ETag", "Location", "Link", "X-Next-Cursor")


class Conformance:
    """Checks responses against the document a client of the same app downloads."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.document: dict[str, Any] = client.get("/openapi.json").json()
        self.templates = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "/?$"), path)
            for path in self.document["paths"]
        ]
        self.checked: set[tuple[str, str, int]] = set()

    def template(self, path: str) -> str:
        """The document's path that ``path`` is one of (``/api/patients/{patient_id}``)."""
        return next(t for pattern, t in self.templates if pattern.match(path))

    def __call__(self, response: httpx.Response) -> httpx.Response:
        method = response.request.method.lower()
        path = response.request.url.path
        template = self.template(path)
        responses = self.document["paths"][template][method]["responses"]
        status = str(response.status_code)
        assert status in responses, (
            f"{method.upper()} {template} answered {status}, which the document does not "
            f"list ({sorted(responses)}): {response.text[:200]}"
        )
        declared = responses[status].get("headers", {})
        for header, spec in declared.items():
            if spec.get("required") is False:  # declared as sent with some answers only
                continue
            assert header in response.headers, f"{method.upper()} {template} {status}: no {header}"
        for header in OWN_HEADERS:
            assert header not in response.headers or header in declared, (
                f"{method.upper()} {template} {status} sends {header}, which the document "
                "does not declare"
            )
        content = responses[status].get("content", {})
        if response.headers.get("content-type", "").startswith("application/json"):
            schema = content["application/json"]["schema"]
            validator = Draft202012Validator({**schema, "components": self.document["components"]})
            problems = [
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                for e in validator.iter_errors(response.json())
            ]
            assert not problems, f"{method.upper()} {template} {status}: {problems}"
        self.checked.add((method, template, response.status_code))
        return response


@pytest.fixture
def conform(ai_client: TestClient) -> Conformance:
    return Conformance(ai_client)


def _image_url(size: tuple[int, int] = (16, 16)) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(size)).decode()


def test_patient_responses_match_the_document(
    conform: Conformance, sqlite_services: Application
) -> None:
    c = conform.client
    pid = conform(c.post("/api/patients", json={"name": "Ada", "imageUrl": _image_url()})).json()[
        "id"
    ]
    patient = f"/api/patients/{pid}"
    conform(c.post("/api/patients", json={"name": "Ada", "id": pid}))  # 409: the id is taken
    conform(
        c.post("/api/patients", json={"name": "Ada", "imageUrl": "data:text/plain;base64,aGk="})
    )
    conform(c.get("/api/patients", params={"orderBy": "admissionDate"}))
    full = conform(c.get("/api/patients", params={"limit": 1}))
    assert "Link" in full.headers
    conform(c.get("/api/patients", params={"limit": 1, "after": full.headers["X-Next-Cursor"]}))
    conform(c.get("/api/patients", params={"after": "garbage"}))  # a cursor's 422
    conform(c.get("/api/patients", params={"limit": 0}))  # FastAPI's own 422
    conform(c.get("/api/patients", params={"orderBy": "shoeSize"}))  # a service's 422
    conform(c.get("/api/patients", params={"bogus": 1}))  # a parameter it does not take
    etag = conform(c.get(patient)).headers["ETag"]
    conform(c.get(patient, headers={"If-None-Match": etag}))  # 304, with the ETag
    conform(c.get("/api/patients/ghost"))
    conform(c.patch(patient, json={"age": 41}, headers={"If-Match": '"stale"'}))
    conform(c.patch(patient, json={"age": 41}, headers={"If-Match": etag}))
    conform(c.patch(patient, json={"age": 400}))
    conform(
        c.patch(patient, content=b'{"name": "\xff"}', headers={"content-type": "application/json"})
    )
    conform(c.post(f"{patient}/validate", json={"approved": True}))  # 409: no analysis yet
    add_analysis(sqlite_services, pid)
    conform(c.post(f"{patient}/validate", params={"approved": "true"}))
    conform(c.post(f"{patient}/schedule", json={"appointmentDate": "2099-01-01T09:00:00Z"}))
    conform(c.post(f"{patient}/schedule", json={"appointmentDate": "2001-01-01T09:00:00Z"}))
    image = conform(c.get(f"{patient}/image"))
    conform(c.get(f"{patient}/image", headers={"If-None-Match": image.headers["ETag"]}))
    conform(c.get("/api/patients/ghost/image"))
    scans = conform(c.get(f"{patient}/scans")).json()
    conform(c.get(f"{patient}/scans/{scans[0]['id']}/image"))
    rendition = conform(c.get(f"{patient}/image", params={"format": "png", "max_side": 8}))
    conform(
        c.get(
            f"{patient}/image",
            params={"max_side": 8},
            headers={"If-None-Match": rendition.headers["ETag"]},
        )
    )
    conform(c.get(f"{patient}/scans/{scans[0]['id']}/image", params={"format": "png"}))
    conform(c.get(f"{patient}/scans/{scans[0]['id']}/image", params={"max_side": 0}))
    c.app.state.renditions.max_pixels = 10  # type: ignore[attr-defined]
    conform(c.get(f"{patient}/image", params={"max_side": 9}))  # 413: over the limit
    png = ("b.png", png_bytes((24, 24)), "image/png")
    conform(c.post(f"{patient}/scans", files={"file": png}))
    conform(c.post(f"{patient}/scans", files={"file": ("a.txt", b"hi", "text/plain")}))
    conform(c.post(f"{patient}/oculomics", json={"eye": "OD", "date": "2024-01-01", "iop": 15}))
    conform(c.post(f"{patient}/oculomics", json={"eye": "OD", "date": "2024-01-01"}))
    conform(c.get(f"{patient}/oculomics"))
    conform(c.delete(patient, headers={"If-Match": '"stale"'}))
    conform(c.delete(patient))

    assert {status for _, _, status in conform.checked} >= {
        200,
        201,
        304,
        400,
        404,
        409,
        412,
        413,
        415,
        422,
    }


def test_notification_and_audit_responses_match_the_document(conform: Conformance) -> None:
    c = conform.client
    created = conform(c.post("/api/notifications", json={"message": "hello"})).json()
    conform(c.post("/api/notifications", json={"message": "hi", "patientId": "ghost"}))
    conform(c.post("/api/notifications", json={"message": "hi", "kind": "info"}))
    conform(c.get("/api/notifications"))
    assert "Link" in conform(c.get("/api/notifications", params={"limit": 1})).headers
    conform(c.get("/api/notifications/unread-count"))
    conform(c.get(f"/api/notifications/{created['id']}"))
    conform(c.patch(f"/api/notifications/{created['id']}/read"))
    conform(c.patch("/api/notifications/mark-all-read"))
    conform(c.delete(f"/api/notifications/{created['id']}"))
    conform(c.delete(f"/api/notifications/{created['id']}"))
    conform(c.get("/api/audit"))
    conform(c.get("/health"))
    conform(c.post("/api/patients", json={"name": "X"}, headers={"Origin": "http://evil.example"}))


def test_ai_and_job_responses_match_the_document(
    conform: Conformance, engine: ScriptedEngine
) -> None:
    c = conform.client
    png = base64.b64encode(png_bytes()).decode()
    result = conform(c.post("/api/ai/analyze", json={"image_base64": png, "question": "Edema?"}))
    conform(c.post("/api/ai/analyze", json={"image_base64": "%%%"}))
    conform(c.post("/api/ai/analyze", json={"image_base64": base64.b64encode(b"hi").decode()}))
    conform(c.post("/api/ai/analyze", json={"image_base64": png, "patient_id": "ghost"}))
    upload = ("a.png", png_bytes(), "image/png")
    conform(c.post("/api/ai/analyze-upload", files={"file": upload}))
    pid = c.post("/api/patients", json={"name": "Ada", "imageUrl": _image_url()}).json()["id"]
    job = conform(c.post(f"/api/patients/{pid}/analyze", json={"question": "Edema?"})).json()
    conform(c.post(f"/api/patients/{pid}/analyze", json={"prompt": "Edema?"}))
    conform(c.get("/api/jobs"))
    conform(c.get(f"/api/jobs/{job['id']}"))
    conform(c.get("/api/jobs/999999"))
    conform(c.post(f"/api/jobs/{result.json()['job_id']}/cancel"))  # 409: it has ended
    conform(c.get(f"/api/analyses/{result.json()['analysis_id']}"))
    conform(c.get("/api/analyses/999999"))
    conform(c.get("/api/ai/health"))
    conform(c.post("/api/ai/unload-model", json={"x": 1}))
    conform(c.post("/api/ai/unload-model"))
    conform(c.post("/api/ai/load-model"))
    engine.state = "not_installed"
    conform(c.post("/api/ai/analyze", json={"image_base64": png}))
    conform(c.post("/api/ai/load-model"))

    assert result.json()["classification"] == "Diabetic Macular Edema"
    assert {status for _, _, status in conform.checked} >= {200, 202, 404, 409, 415, 422, 503}


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TestClient]:
    """An API that requires the token, with a small body limit."""
    application = build_application(
        make_settings(tmp_path, api_token=TOKEN, max_request_bytes=4096)
    )
    try:
        with LoopbackClient(create_app(application)) as client:
            yield client
    finally:
        application.close()


def test_with_a_token_the_document_requires_it_and_says_how_to_send_it(
    guarded: TestClient,
) -> None:
    conform = Conformance(guarded)
    schemes = conform.document["components"]["securitySchemes"]
    operations = {
        (method, path): operation
        for path, methods in conform.document["paths"].items()
        for method, operation in methods.items()
    }

    assert schemes["bearerToken"] == {**schemes["bearerToken"], "type": "http", "scheme": "bearer"}
    assert schemes["queryToken"]["in"] == "query" and schemes["queryToken"]["name"] == "token"
    for (method, path), operation in operations.items():
        if not path.startswith("/api/"):
            assert "security" not in operation, path
        elif path.endswith("/image"):  # browsers load <img> without headers
            assert operation["security"] == [{"bearerToken": []}, {"queryToken": []}], path
        else:
            assert operation["security"] == [{"bearerToken": []}], (method, path)
    conform(guarded.get("/api/patients"))  # 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    conform(guarded.post("/api/patients", json={"name": "x" * 5000}, headers=auth))  # 413
    assert {status for _, _, status in conform.checked} == {401, 413}


def test_without_a_token_the_document_asks_for_none(client: TestClient) -> None:
    document = client.get("/openapi.json").json()

    securities = [
        operation["security"]
        for path, methods in document["paths"].items()
        if path.startswith("/api/")
        for operation in methods.values()
    ]
    assert securities and all({} in security for security in securities)
    assert "bearerToken" in document["components"]["securitySchemes"]  # /docs' Authorize


def test_the_document_uses_json_schema_keywords_and_one_422_body(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    age = document["components"]["schemas"]["PatientCreate"]["properties"]["age"]

    assert {"type": "integer", "minimum": 0, "maximum": 130} in [
        {k: v for k, v in option.items() if k in ("type", "minimum", "maximum")}
        for option in age["anyOf"]
    ]
    assert not list(_pydantic_keywords(document)), list(_pydantic_keywords(document))
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for method, path in [
        ("patch", "/api/patients/{patient_id}"),
        ("post", "/api/patients/{patient_id}/analyze"),
    ]:
        parameters = document["paths"][path][method]["parameters"]
        assert {"name": "if-match", "in": "header"}.items() <= next(
            p for p in parameters if p["in"] == "header"
        ).items()
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            schema = operation["responses"]["422" if path != "/health" else "403"]
            assert schema["content"]["application/json"]["schema"]["$ref"].endswith(
                "/ValidationErrorPublic" if path != "/health" else "/ErrorPublic"
            ), (method, path)


def test_each_title_in_the_document_has_the_words_of_its_field(client: TestClient) -> None:
    """/docs titled the camelCase fields with their words run together ("Pollseconds",
    "Inprogress", "Admissiondate"): each title is now its key's words ("Poll Seconds")."""
    document = client.get("/openapi.json").json()
    titled = list(_titles(document))

    assert ("pollSeconds", "Poll Seconds") in titled and ("inProgress", "In Progress") in titled
    # Abbreviations and units as a clinician writes them (they read "Iop Mmhg").
    assert ("iopMmhg", "IOP (mmHg)") in titled and ("aiAnalysis", "AI Analysis") in titled
    assert ("rnflThicknessUm", "RNFL Thickness (µm)") in titled
    assert ("vesselDensityPct", "Vessel Density (%)") in titled
    assert ("queue_wait_s", "Queue Wait (s)") in titled and ("total_s", "Total (s)") in titled
    unlike = [(key, title) for key, title in titled if _words(_spelt(title)) != _words(key)]
    assert not unlike, unlike


def _titles(node: Any) -> Iterator[tuple[str, str]]:
    """Each (key, title) of the document: the properties of its schemas, the parameters
    of its routes."""
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            if isinstance(value, dict) and "title" in value:
                yield key, value["title"]
        if "in" in node and "title" in node.get("schema", {}):  # a route's parameter
            yield node["name"], node["schema"]["title"]
        for value in node.values():
            yield from _titles(value)
    elif isinstance(node, list):
        for value in node:
            yield from _titles(value)


def _spelt(title: str) -> str:
    """``title`` with its units as its field's name spells them: "IOP (mmHg)" gives
    "iop mmhg"."""
    for unit, spelt in (("(µm)", "um"), ("(%)", "pct"), ("(mmHg)", "mmhg"), ("(s)", "s")):
        title = title.replace(unit, spelt)
    return title.lower()


def _words(name: str) -> list[str]:
    """``name``'s words, lower case: "pollSeconds", "poll_seconds", "Poll Seconds" and
    "poll-seconds" all give ["poll", "seconds"]."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return re.sub(r"[_\-]", " ", spaced).lower().split()


def _pydantic_keywords(node: Any, where: str = "") -> Iterator[str]:
    """Where the document uses a keyword of :data:`PYDANTIC_ONLY` in a schema."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in PYDANTIC_ONLY and not where.endswith("/properties"):
                yield f"{where}/{key}"
            yield from _pydantic_keywords(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _pydantic_keywords(value, f"{where}/{index}")


def test_each_route_that_stores_an_image_lists_the_507_of_a_full_disk(
    conform: Conformance, full_image_store: None
) -> None:
    """A full image store is a 507 wherever an image is sent (a data URL in a patient's
    imageUrl, base64 to analyse, an upload); the document listed it for uploads only, so
    a generated client had no type for the others' answer."""
    c = conform.client
    patient = f"/api/patients/{c.post('/api/patients', json={'name': 'Ada'}).json()['id']}"
    png = png_bytes((20, 20))
    upload = {"file": ("a.png", png, "image/png")}

    answers = [
        conform(c.post("/api/patients", json={"name": "Bea", "imageUrl": _image_url()})),
        conform(c.patch(patient, json={"imageUrl": _image_url()})),
        conform(c.post(f"{patient}/scans", files=upload)),
        conform(c.post("/api/ai/analyze", json={"image_base64": base64.b64encode(png).decode()})),
        conform(c.post("/api/ai/analyze-upload", files=upload)),
    ]

    assert [a.status_code for a in answers] == [507] * len(answers), [a.text for a in answers]


def test_the_507_of_a_full_disk_is_listed_by_the_routes_that_store_and_by_no_other(
    conform: Conformance, sqlite_services: Application, request: pytest.FixtureRequest
) -> None:
    """Every route listed the 507 of a full disk, GET /api/patients included: a route
    that writes nothing cannot run out of room, and a generated client handled an answer
    that never comes. Each route is called with the database's and the image store's
    disk full: those answering 507 are those the document lists it for."""
    c = conform.client
    png = png_bytes((20, 20))
    image = base64.b64encode(png).decode()
    pid = c.post("/api/patients", json={"name": "Ada", "imageUrl": _image_url()}).json()["id"]
    patient = f"/api/patients/{pid}"
    scan = f"{patient}/scans/{c.get(f'{patient}/scans').json()[0]['id']}"
    measured = c.post(f"{patient}/oculomics", json={"eye": "OS", "date": "2024-01-01", "iop": 14})
    measurement = f"{patient}/oculomics/{measured.json()['id']}"
    analysed = c.post("/api/ai/analyze", json={"image_base64": image, "patient_id": pid}).json()
    notice = c.post("/api/notifications", json={"message": "hi"}).json()["id"]
    notification = f"/api/notifications/{notice}"
    upload = {"file": ("a.png", png, "image/png")}
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/health", {}),
        ("GET", "/api/patients", {}),
        ("POST", "/api/patients", {"json": {"name": "Bea"}}),
        ("GET", patient, {}),
        ("PATCH", patient, {"json": {"age": 41}}),
        ("POST", f"{patient}/validate", {"json": {"approved": True}}),
        ("POST", f"{patient}/schedule", {"json": {"appointmentDate": "2099-01-01T09:00:00Z"}}),
        ("GET", f"{patient}/image", {}),
        ("GET", f"{patient}/scans", {}),
        ("POST", f"{patient}/scans", {"files": upload}),
        ("GET", scan, {}),
        ("GET", f"{scan}/image", {}),
        ("GET", f"{patient}/oculomics", {}),
        ("GET", measurement, {}),
        ("POST", f"{patient}/oculomics", {"json": {"eye": "OD", "date": "2024-01-01", "iop": 15}}),
        ("GET", "/api/notifications", {}),
        ("POST", "/api/notifications", {"json": {"message": "hello"}}),
        ("GET", "/api/notifications/unread-count", {}),
        ("PATCH", "/api/notifications/mark-all-read", {}),
        ("PATCH", f"{notification}/read", {}),
        ("GET", notification, {}),
        ("DELETE", notification, {}),
        ("GET", "/api/ai/health", {}),
        ("POST", "/api/ai/load-model", {}),
        ("POST", "/api/ai/analyze", {"json": {"image_base64": image}}),
        ("POST", "/api/ai/analyze-upload", {"files": upload}),
        ("POST", f"{patient}/analyze", {}),
        ("GET", "/api/jobs", {}),
        ("GET", f"/api/jobs/{analysed['job_id']}", {}),
        ("GET", f"/api/analyses/{analysed['analysis_id']}", {}),
        ("GET", "/api/audit", {}),
        ("GET", "/api/watch-folder", {}),
        ("POST", "/api/watch-folder/pause", {}),
        ("POST", "/api/watch-folder/resume", {}),
        ("DELETE", patient, {}),
        ("POST", "/api/ai/unload-model", {}),  # from now on, an analysis queued waits
    ]
    answered: dict[tuple[str, str], int] = {}

    def call(method: str, path: str, **kwargs: Any) -> None:
        response = conform(c.request(method, path, **kwargs))
        answered[(method.lower(), conform.template(path))] = response.status_code

    request.getfixturevalue("full_image_store")  # from here on
    with database_writes_refused(sqlite_services.db):
        for method, path, kwargs in calls:
            call(method, path, **kwargs)
    queued = c.post(f"{patient}/analyze").json()["id"]  # waits: the model is unloaded
    with database_writes_refused(sqlite_services.db):
        call("POST", f"/api/jobs/{queued}/cancel")

    routes = {(m, path) for path, methods in conform.document["paths"].items() for m in methods}
    assert set(answered) == routes  # each was called
    refused = {route for route, status in answered.items() if status == 507}
    listing = {
        (method, path)
        for path, methods in conform.document["paths"].items()
        for method, operation in methods.items()
        if "507" in operation["responses"]
    }
    assert sorted(listing - refused) == [], "listed by routes that do not store"
    assert sorted(refused - listing) == [], "answered by routes that do not list it"


@pytest.mark.parametrize("path", ["/api/patients", "/api/notifications"])
def test_every_query_parameter_of_a_paged_list_says_what_it_does(
    client: TestClient, path: str
) -> None:
    """/docs showed `search`, `status`, `descending`, `unread_only` and `patient_id` with
    no word: an integrator could not tell from it that the search ignores accents, or
    which way `descending` sorts the patients without a value."""
    parameters = client.get("/openapi.json").json()["paths"][path]["get"]["parameters"]

    undescribed = [p["name"] for p in parameters if not p.get("description", "").strip()]

    assert undescribed == []
