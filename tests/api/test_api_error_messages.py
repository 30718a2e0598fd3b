"""Errors an integrating developer (a web frontend) can act on from the body alone: a
405 that says what the path takes, a 404 for a path that is no route pointing to the
docs. A web page reads the body but, unless CORS exposes them, not the headers."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from tests.conftest import png_bytes

#: A web frontend's origin among the default OPHTHAI_CORS_ORIGINS.
FRONTEND = "http://localhost:5173"


@pytest.mark.parametrize(
    ("method", "path", "message"),
    [
        (
            "DELETE",
            "/api/notifications/mark-all-read",
            "DELETE is not allowed on /api/notifications/mark-all-read; it takes PATCH",
        ),
        (
            "PUT",
            "/api/patients/pt-1/",
            "PUT is not allowed on /api/patients/pt-1/; it takes GET, HEAD, PATCH, DELETE",
        ),
        (
            "DELETE",
            "/docs-static/swagger-ui.css",  # a mount, which answers its own 405
            "DELETE is not allowed on /docs-static/swagger-ui.css; it takes GET, HEAD",
        ),
    ],
)
def test_a_405_says_in_its_body_which_methods_the_path_takes(
    client: TestClient, method: str, path: str, message: str
) -> None:
    response = client.request(method, path)

    assert response.status_code == 405
    body = response.json()
    assert body["message"] == body["detail"] == message
    assert response.headers["allow"] == message.rsplit("it takes ", 1)[1]


def test_a_web_page_can_read_a_405s_allow_header(client: TestClient) -> None:
    response = client.delete("/api/notifications/mark-all-read", headers={"Origin": FRONTEND})

    assert response.headers["access-control-allow-origin"] == FRONTEND
    exposed = response.headers["access-control-expose-headers"].split(", ")
    assert "Allow" in exposed


@pytest.mark.parametrize(
    "path", ["/api/patient", "/api/patients/pt-1/scan", "/", "/doc", "/docs-static/nothing.js"]
)
def test_a_path_that_is_no_route_is_a_404_naming_it_and_the_docs(
    client: TestClient, path: str
) -> None:
    response = client.get(path)

    assert response.status_code == 404
    body = response.json()
    assert body["message"] == body["detail"]
    assert body["message"] == (
        f"there is nothing at {path}: the API's paths are listed at /docs (and in /openapi.json)"
    )


def test_a_404_for_a_path_that_is_no_route_logs_nothing_of_the_path(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The path may hold a patient's id or name (a mistyped route): the answer repeats
    it to the client who sent it, the log does not."""
    caplog.set_level(logging.DEBUG)

    response = client.get("/api/patient/Jane-Doe-1970")

    assert response.status_code == 404
    assert "Jane-Doe-1970" in response.json()["message"]
    # The server's own loggers (the test client logs each URL it requests).
    served = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert not [r.getMessage() for r in served if "Jane-Doe" in r.getMessage()]


def test_a_404_of_a_route_keeps_its_own_message(client: TestClient) -> None:
    response = client.get("/api/patients/pt-nobody")

    assert response.status_code == 404
    assert response.json()["message"] == "patient pt-nobody not found"


#: What the notifications' POST takes, as its 422s list it.
NOTIFICATION_TAKES = "it takes: message (required), type, patientId"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "the body must be a JSON object; none was sent"),
        ({"content": b""}, "the body must be a JSON object; none was sent"),
        ({"content": b"null"}, "the body must be a JSON object"),
        ({"content": b"[]"}, "the body must be a JSON object"),
    ],
)
def test_a_body_missing_or_not_an_object_says_a_json_object_is_expected_and_its_keys(
    client: TestClient, kwargs: dict[str, bytes], message: str
) -> None:
    headers = {"content-type": "application/json"} if kwargs else {}

    response = client.post("/api/notifications", headers=headers, **kwargs)

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["loc"] == ["body"]
    assert error["field"] == ""
    assert error["msg"] == f"{message} ({NOTIFICATION_TAKES})"
    assert response.json()["message"] == f"body: {message} ({NOTIFICATION_TAKES})"


@pytest.mark.parametrize(
    ("method", "path", "takes"),
    [
        (
            "POST",
            "/api/patients",
            "it takes: id, name (required), age, birthDate, gender, symptoms, history, "
            "status, admissionDate, imageUrl, modality, laterality",
        ),
        (
            # The read-only keys a PATCH accepts (a patient sent back whole) are not
            # listed: they are never applied.
            "PATCH",
            "/api/patients/{pid}",
            "it takes: name, age, birthDate, gender, symptoms, history, status, "
            "admissionDate, appointmentDate, workflowStep, validationStatus, imageUrl, "
            "modality, laterality, aiAnalysis",
        ),
        (
            "POST",
            "/api/patients/{pid}/oculomics",
            "it takes: eye (required), measuredOn (required), iopMmhg, cupToDiscRatio, "
            "rnflThicknessUm, vesselDensityPct",
        ),
        ("POST", "/api/ai/analyze", "it takes: imageBase64 (required), patientId, question"),
    ],
)
def test_a_required_body_left_out_lists_what_the_endpoint_takes(
    client: TestClient, method: str, path: str, takes: str
) -> None:
    pid = client.post("/api/patients", json={"name": "Ada"}).json()["id"]

    response = client.request(method, path.format(pid=pid))

    assert response.status_code == 422
    assert response.json()["message"] == (
        f"body: the body must be a JSON object; none was sent ({takes})"
    )


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        (
            "POST",
            "/api/notifications",
            {"message": "m", "patient": "pt-1"},
            f"patient: this endpoint takes no such field ({NOTIFICATION_TAKES})",
        ),
        (
            "PATCH",
            "/api/notifications/mark-all-read",
            {"read": True},
            "read: this endpoint takes no such field (it takes none)",
        ),
        (
            "POST",
            "/api/patients/{pid}/validate",
            {"approved": True, "doctor": "Dr A"},
            "doctor: this endpoint takes no such field (it takes: approved (required), "
            "clinician, notes)",
        ),
    ],
)
def test_an_unknown_body_key_names_what_the_endpoint_takes_as_query_and_form_ones_do(
    client: TestClient, method: str, path: str, body: dict[str, object], message: str
) -> None:
    pid = client.post("/api/patients", json={"name": "Ada"}).json()["id"]

    response = client.request(method, path.format(pid=pid), json=body)

    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["type"] == "extra_forbidden"
    assert response.json()["message"] == message


def _patient_with_scan(client: TestClient) -> tuple[str, int]:
    patient_id: str = client.post("/api/patients", json={"name": "Ada"}).json()["id"]
    scan = client.post(
        f"/api/patients/{patient_id}/scans",
        files={"file": ("a.png", png_bytes((40, 30)), "image/png")},
    )
    assert scan.status_code == 201, scan.text
    return patient_id, scan.json()["id"]


def test_analysing_an_unknown_scan_is_a_404_even_without_a_model(client: TestClient) -> None:
    """Which scan is wrong is worth saying before that the model is missing (503), which
    stays the answer to a request that names what exists."""
    patient_id, scan_id = _patient_with_scan(client)
    other_id, other_scan = _patient_with_scan(client)

    unknown = client.post(f"/api/patients/{patient_id}/analyze", json={"scanId": scan_id + 99})
    not_theirs = client.post(f"/api/patients/{patient_id}/analyze", json={"scanId": other_scan})
    valid = client.post(f"/api/patients/{patient_id}/analyze", json={"scanId": scan_id})
    newest = client.post(f"/api/patients/{other_id}/analyze")

    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["message"] == f"scan {scan_id + 99} of patient {patient_id} not found"
    assert not_theirs.status_code == 404, not_theirs.text
    assert valid.status_code == newest.status_code == 503
    assert "not installed" in valid.json()["message"]
    assert client.get("/api/jobs").json() == []


def test_analysing_a_patient_without_scans_says_so_even_without_a_model(
    client: TestClient,
) -> None:
    """Installing the model would not help: the request needs an image first."""
    patient_id = client.post("/api/patients", json={"name": "Ada"}).json()["id"]

    response = client.post(f"/api/patients/{patient_id}/analyze")

    assert response.status_code == 409, response.text
    assert response.json()["message"] == (
        f"patient {patient_id} has no image to analyse; add one first"
    )


@pytest.mark.parametrize(
    "query",
    [
        # Written into the URL unencoded: the query reads the zone's + as a space.
        "appointment_date=2030-12-01T09:30:00+01:00",
        "appointment_date=2030-12-01T09:30+0100",
        "appointment_date=2030-12-01 09:30:00.5+01",
    ],
)
def test_a_query_time_whose_zone_plus_came_as_a_space_says_to_encode_it(
    client: TestClient, query: str
) -> None:
    pid = client.post("/api/patients", json={"name": "Plus Sign"}).json()["id"]

    r = client.post(f"/api/patients/{pid}/schedule?{query}")

    assert r.status_code == 422
    (problem,) = r.json()["errors"]
    assert problem["field"] == "appointment_date"
    assert "%2B" in problem["msg"] and "read as a space" in problem["msg"]
    assert "%2B" in r.json()["message"]
    # Encoded as the message says, the same time is booked.
    r = client.post(f"/api/patients/{pid}/schedule?appointment_date=2030-12-01T09:30:00%2B01:00")
    assert r.status_code == 200
    assert r.json()["appointmentDate"] == "2030-12-01T08:30:00Z"


def test_a_query_time_refused_for_another_reason_gets_no_plus_hint(client: TestClient) -> None:
    pid = client.post("/api/patients", json={"name": "No Plus"}).json()["id"]

    r = client.post(f"/api/patients/{pid}/schedule?appointment_date=next tuesday")

    assert r.status_code == 422
    assert "%2B" not in r.json()["message"]


def test_a_422_names_its_one_field_at_the_top_whichever_layer_refused_it(
    client: TestClient,
) -> None:
    """A form highlights the body's ``field``. The API's own 422s set it, but those of
    FastAPI's validation did not, so one endpoint named ``appointmentDate`` at the top
    for a request without a body and not for ``{}``. A 422 whose problems are all one
    field names it; problems with several fields (or the body as a whole) name none."""
    patient = client.post("/api/patients", json={"name": "Ann"}).json()["id"]

    no_body = client.post(f"/api/patients/{patient}/schedule").json()
    empty = client.post(f"/api/patients/{patient}/schedule", json={}).json()
    too_low = client.get("/api/patients", params={"limit": 0}).json()
    query_spelling = client.get("/api/jobs", params={"patientId": ""}).json()
    two_fields = client.post("/api/patients", json={"age": -1}).json()
    not_json = client.post(
        "/api/patients", content=b'{"name": "Ann"', headers={"Content-Type": "application/json"}
    ).json()

    assert no_body.get("field") == empty.get("field") == "appointmentDate"
    assert too_low.get("field") == "limit"
    assert query_spelling.get("field") == "patientId"
    assert {e["field"] for e in two_fields["errors"]} == {"name", "age"}
    assert "field" not in two_fields
    assert "field" not in not_json  # the body as a whole: no field to highlight


@pytest.mark.parametrize(
    ("sent", "said"),
    [
        # JavaScript's toISOString() of a local midnight east of UTC.
        ("1980-04-30T22:00:00.000Z", "without a time of day: a moment with a time other"),
        ("1980-13-01", "a date as YYYY-MM-DD (e.g. 1980-05-01): month value is outside"),
    ],
    ids=["a moment", "no date"],
)
def test_a_birth_date_refused_says_what_a_date_is_in_the_api_s_words(
    client: TestClient, sent: str, said: str
) -> None:
    """pydantic's words ("Datetimes provided to dates should have zero time - e.g. be
    exact dates") for the commonest slip of a web form, a date sent as a UTC moment."""
    response = client.post("/api/patients", json={"name": "Ada", "birthDate": sent})

    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "birthDate"
    assert said in body["message"]
    assert "Datetimes provided" not in response.text
    assert "Input should be" not in response.text


def test_the_seed_s_oculomics_date_refused_is_named_as_the_field_at_fault(
    client: TestClient,
) -> None:
    """The seed's "date" key was taken for a type pydantic tried and dropped from the
    location: the 422 said "body: ..." and named no field for a form to mark."""
    pid = client.post("/api/patients", json={"name": "Ada"}).json()["id"]

    response = client.post(
        f"/api/patients/{pid}/oculomics", json={"eye": "OD", "date": "2024-02-30", "iop": 14}
    )

    assert response.status_code == 422
    assert response.json()["field"] == "date"
    assert response.json()["message"].startswith("date: a date as YYYY-MM-DD")


@pytest.mark.parametrize("sent", [19800501, "19800501", 1.5], ids=["number", "digits", "fraction"])
def test_a_birth_date_sent_as_a_number_is_not_said_to_be_a_utc_moment(
    client: TestClient, sent: object
) -> None:
    """pydantic reads a number (or a text of digits) as seconds since 1970, so
    19800501 is 1970-08-18 04:08:21: the 422 told the client to send "the date as
    entered, not as a UTC moment", when it had sent the date as entered, without dashes."""
    response = client.post("/api/patients", json={"name": "Ada", "birthDate": sent})

    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "birthDate"
    assert body["message"] == "birthDate: a date as YYYY-MM-DD (e.g. 1980-05-01), not a number"


@pytest.mark.parametrize("key", ["birth-date", "symptoms[0]", "list[str]"])
def test_a_key_not_taken_is_named_whatever_characters_it_has(client: TestClient, key: str) -> None:
    """A key with a dash or a bracket was taken for a type pydantic tried and dropped
    from the location: the 422 said "body: Extra inputs are not permitted", naming no
    field and not what the endpoint takes."""
    response = client.post("/api/patients", json={"name": "Ada", key: "1980-05-01"})

    assert response.status_code == 422
    body = response.json()
    assert body["field"] == key
    assert body["message"].startswith(f"{key}: this endpoint takes no such field (it takes: ")


@pytest.mark.parametrize("sent", [0, 86400, "0", 325987200000])
def test_a_date_sent_as_a_number_is_refused_never_read_as_seconds_since_1970(
    client: TestClient, sent: object
) -> None:
    """pydantic reads a number, or a text of digits, as seconds (or milliseconds) since
    1970: {"birthDate": 0} was stored as 1970-01-01, 86400 as 1970-01-02, a measurement
    dated 0 as taken on 1970-01-01, where any other number was a 422."""
    pid = client.post("/api/patients", json={"name": "Ada"}).json()["id"]

    created = client.post("/api/patients", json={"name": "Ada", "birthDate": sent})
    changed = client.patch(f"/api/patients/{pid}", json={"birthDate": sent})
    measured = client.post(
        f"/api/patients/{pid}/oculomics", json={"eye": "OD", "measuredOn": sent, "iop": 14}
    )

    for response, field in (
        (created, "birthDate"),
        (changed, "birthDate"),
        (measured, "measuredOn"),
    ):
        assert response.status_code == 422, response.text
        assert response.json()["message"] == (
            f"{field}: a date as YYYY-MM-DD (e.g. 1980-05-01), not a number"
        )
    assert client.get(f"/api/patients/{pid}").json()["birthDate"] is None
