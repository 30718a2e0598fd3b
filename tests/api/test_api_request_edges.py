"""Requests at the edges an integrating developer reaches: camelCase query names,
unknown parameters, numbers and dates past what can be stored, the same value sent
twice, and the newest image's caching. Each gets a 422 naming the parameter, or the
behaviour the contract promises; never a 500, never a silently ignored filter."""

from __future__ import annotations

import base64
import codecs
from typing import Any

import pytest
from fastapi.routing import APIRoute, APIWebSocketRoute
from fastapi.testclient import TestClient

from ophthai_desktop.api import create_app
from ophthai_desktop.api.errors import MAX_LISTED_PROBLEMS
from ophthai_desktop.api.params import DB_INT_MAX, INTEGER_COLUMN_MAX
from ophthai_desktop.api.routes import ai, audit, notifications, patients
from ophthai_desktop.bootstrap import Application
from tests.api.test_api_patients import add_analysis
from tests.conftest import png_bytes
from tests.support.http import LoopbackClient


def _patient(client: TestClient, **fields: Any) -> str:
    response = client.post("/api/patients", json={"name": "Ada", **fields})
    assert response.status_code == 201, response.text
    patient_id: str = response.json()["id"]
    return patient_id


def _fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    return [error["field"] for error in response.json()["errors"]]


def test_camel_case_query_names_filter_like_snake_case_ones(client: TestClient) -> None:
    mine, other = _patient(client), _patient(client)
    for patient_id in (mine, other, mine):
        client.post("/api/notifications", json={"message": "scan", "patientId": patient_id})
    first = client.get("/api/notifications", params={"patient_id": mine}).json()[0]["id"]
    client.patch(f"/api/notifications/{first}/read")

    for name in ("patient_id", "patientId"):
        listed = client.get("/api/notifications", params={name: mine})
        assert {n["patientId"] for n in listed.json()} == {mine}, name
        assert listed.headers["X-Total-Count"] == "2"
    unread = client.get("/api/notifications", params={"patientId": mine, "unreadOnly": "true"})
    assert [n["read"] for n in unread.json()] == [False]


def test_a_query_parameter_the_endpoint_does_not_take_is_a_422_naming_it(
    client: TestClient,
) -> None:
    response = client.get("/api/notifications", params={"patient": "pt-x", "limit": 5})
    assert _fields(response) == ["patient"]
    assert "it takes:" in response.json()["message"] and "patient_id" in response.json()["message"]
    # Cache busters and the browsers' token are no parameters of the endpoint's own.
    assert client.get("/api/notifications", params={"_": "1733300000"}).status_code == 200
    assert client.get("/api/patients/", params={"token": "x", "limit": 2}).status_code == 200


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/patients", {"skip": str(DB_INT_MAX + 1)}, "skip"),
        ("/api/notifications", {"skip": "99999999999999999999"}, "skip"),
        ("/api/jobs", {"skip": str(DB_INT_MAX + 1)}, "skip"),
        ("/api/audit", {"skip": str(DB_INT_MAX + 1)}, "skip"),
        ("/api/notifications/99999999999999999999", {}, "notification_id"),
        ("/api/jobs/99999999999999999999", {}, "job_id"),
        ("/api/analyses/99999999999999999999", {}, "analysis_id"),
    ],
)
def test_numbers_past_what_the_database_stores_are_a_422(
    client: TestClient, path: str, params: dict[str, str], field: str
) -> None:
    """SQLite cannot bind them: they used to be a bare 500 (and a dropped connection)."""
    assert _fields(client.get(path, params=params)) == [field]


def test_a_record_id_past_32_bits_is_a_422_on_either_database(app_services: Application) -> None:
    """Record ids are 32-bit columns on PostgreSQL, which refused to bind 2**31 and
    above: a 500 there (SQLite answered 404)."""
    too_big = INTEGER_COLUMN_MAX + 1
    with LoopbackClient(create_app(app_services)) as client:
        patient_id = _patient(client)
        add_analysis(app_services, patient_id)
        for method, path, field in [
            ("GET", f"/api/notifications/{too_big}", "notification_id"),
            ("PATCH", f"/api/notifications/{too_big}/read", "notification_id"),
            ("DELETE", f"/api/notifications/{too_big}", "notification_id"),
            ("GET", f"/api/jobs/{too_big}", "job_id"),
            ("POST", f"/api/jobs/{too_big}/cancel", "job_id"),
            ("GET", f"/api/analyses/{too_big}", "analysis_id"),
            ("GET", f"/api/patients/{patient_id}/scans/{too_big}/image", "scan_id"),
        ]:
            assert _fields(client.request(method, path)) == [field], (method, path)
        analyze = f"/api/patients/{patient_id}/analyze"
        assert _fields(client.post(analyze, json={"scanId": too_big})) == ["scanId"]
        # The largest id a record can have is looked for: none has it.
        largest = client.get(f"/api/notifications/{INTEGER_COLUMN_MAX}")
        assert largest.status_code == 404, largest.text
        assert client.post(analyze, json={"scanId": INTEGER_COLUMN_MAX}).status_code == 404


def test_an_ai_result_naming_an_analysis_id_past_32_bits_is_stored_as_new(
    app_services: Application,
) -> None:
    """A PATCH's ``aiAnalysis`` names the analysis it was read from (``analysis_id``);
    one past 32 bits was looked up on PostgreSQL, which refused to bind it (a 500). No
    analysis has it: the result is stored as a new client-supplied one, as on SQLite."""
    with LoopbackClient(create_app(app_services)) as client:
        patient_id = _patient(client)
        result = {
            "classification": "Glaucoma suspect",
            "confidence": 71,
            "findings": ["thin RNFL"],
            "recommendation": "Visual fields",
            "explanation": "Inferior RNFL thinning.",
            "analysis_id": INTEGER_COLUMN_MAX + 1,
        }
        response = client.patch(f"/api/patients/{patient_id}", json={"aiAnalysis": result})
        assert response.status_code == 200, response.text
        stored = response.json()["aiAnalysis"]
        assert stored["parse_status"] == "client_supplied"
        assert stored["analysis_id"] != INTEGER_COLUMN_MAX + 1


def test_the_largest_storable_skip_is_an_empty_page(client: TestClient) -> None:
    _patient(client)
    response = client.get("/api/patients", params={"skip": str(DB_INT_MAX)})
    assert response.status_code == 200 and response.json() == []


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
def test_dates_that_leave_the_calendar_in_utc_are_a_422(client: TestClient, when: str) -> None:
    patient_id = _patient(client)
    created = client.post("/api/patients", json={"name": "x", "admissionDate": when})
    patched = client.patch(f"/api/patients/{patient_id}", json={"appointmentDate": when})
    scheduled = client.post(f"/api/patients/{patient_id}/schedule", json={"appointment_date": when})
    in_query = client.post(
        f"/api/patients/{patient_id}/schedule", params={"appointment_date": when}
    )
    assert _fields(created) == ["admissionDate"]  # each named as its request spelled it
    assert _fields(patched) == ["appointmentDate"]
    for response in (patched, scheduled, in_query):
        assert "out of range" in response.json()["message"]
    assert _fields(scheduled) == _fields(in_query) == ["appointment_date"]


def test_a_verdict_sent_twice_differently_is_refused_not_guessed(
    client: TestClient, sqlite_services: Application
) -> None:
    patient_id = _patient(client)
    add_analysis(sqlite_services, patient_id)
    url = f"/api/patients/{patient_id}/validate"

    conflicting = client.post(url, params={"approved": "true"}, json={"approved": False})
    assert _fields(conflicting) == ["approved"]
    assert client.get(f"/api/patients/{patient_id}").json()["validationStatus"] is None

    agreeing = client.post(url, params={"approved": "true"}, json={"approved": True})
    assert agreeing.status_code == 200
    assert agreeing.json()["validationStatus"] == "approved"


def test_an_appointment_sent_twice_differently_is_refused(client: TestClient) -> None:
    patient_id = _patient(client)
    url = f"/api/patients/{patient_id}/schedule"
    response = client.post(
        url,
        params={"appointment_date": "2031-03-01T09:00:00Z"},
        json={"appointment_date": "2031-03-02T09:00:00Z"},
    )
    assert _fields(response) == ["appointment_date"]
    same_instant = client.post(
        url,
        params={"appointment_date": "2031-03-01T09:00:00Z"},
        json={"appointment_date": "2031-03-01T10:00:00+01:00"},
    )
    assert same_instant.status_code == 200, same_instant.text


def test_the_newest_image_is_cached_for_good_only_under_its_versioned_url(
    client: TestClient,
) -> None:
    patient_id = _patient(client)
    first = client.post(
        f"/api/patients/{patient_id}/scans", files={"file": ("a.png", png_bytes((30, 20)))}
    )
    assert first.status_code == 201, first.text
    versioned = client.get(f"/api/patients/{patient_id}").json()["imageUrl"]

    assert "immutable" in client.get(versioned).headers["cache-control"]
    bare = client.get(f"/api/patients/{patient_id}/image")
    assert bare.status_code == 200
    assert bare.headers["cache-control"] == "private, no-cache"
    stale = client.get(f"/api/patients/{patient_id}/image", params={"v": "000000000000"})
    assert stale.headers["cache-control"] == "private, no-cache"


def test_a_verdict_patched_in_follows_the_validation_rules(
    client: TestClient, sqlite_services: Application
) -> None:
    """PATCH validationStatus is a verdict like POST /validate: on an analysis that
    exists, recorded on it with who gave it; not a bare flag that disagrees with it."""
    patient_id = _patient(client)
    url = f"/api/patients/{patient_id}"
    without = client.patch(url, json={"validationStatus": "approved"})
    assert without.status_code == 409
    assert client.get(url).json()["validationStatus"] is None

    add_analysis(sqlite_services, patient_id)
    approved = client.patch(url, json={"validationStatus": "approved"})
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["aiAnalysis"]["status"] == "approved"
    assert body["validatedBy"] and body["workflowStep"] == 3

    echoed = client.patch(url, json={"validationStatus": "approved", "name": "Ada"})
    assert echoed.json()["validatedAt"] == body["validatedAt"]  # sent back: no new verdict

    withdrawn = client.patch(url, json={"validationStatus": None}).json()
    assert withdrawn["validationStatus"] is None and withdrawn["validatedBy"] is None
    assert withdrawn["aiAnalysis"]["status"] == "preliminary"


def test_a_bad_image_is_a_422_naming_the_field_it_came_in(client: TestClient) -> None:
    truncated = png_bytes((40, 30))[:-30]
    as_data_url = "data:image/png;base64," + base64.b64encode(truncated).decode()
    patient_id = _patient(client)

    created = client.post("/api/patients", json={"name": "x", "imageUrl": as_data_url})
    patched = client.patch(f"/api/patients/{patient_id}", json={"imageUrl": as_data_url})
    uploaded = client.post(
        f"/api/patients/{patient_id}/scans", files={"file": ("a.png", truncated, "image/png")}
    )
    empty = client.post(
        f"/api/patients/{patient_id}/scans", files={"file": ("a.png", b"", "image/png")}
    )
    analysed = client.post("/api/ai/analyze", json={"image_base64": as_data_url})

    assert _fields(created) == _fields(patched) == ["imageUrl"]
    assert _fields(uploaded) == _fields(empty) == ["file"]
    assert _fields(analysed) == ["image_base64"]
    assert client.get(f"/api/patients/{patient_id}/scans").json() == []


def test_analysing_for_an_unknown_patient_is_a_404_even_without_a_model(
    client: TestClient,
) -> None:
    """Which patient is wrong is worth saying before that the model is missing (503)."""
    image = "data:image/png;base64," + base64.b64encode(png_bytes((40, 30))).decode()
    queued = client.post("/api/patients/pt-nobody/analyze")
    analysed = client.post("/api/ai/analyze", json={"image_base64": image, "patientId": "pt-x"})
    uploaded = client.post(
        "/api/ai/analyze-upload",
        files={"file": ("a.png", png_bytes((40, 30)), "image/png")},
        data={"patient_id": "pt-x"},
    )
    for response in (queued, analysed, uploaded):
        assert response.status_code == 404, response.text
    known = _patient(client)
    scan = client.post(
        f"/api/patients/{known}/scans", files={"file": ("a.png", png_bytes((40, 30)), "image/png")}
    )
    assert scan.status_code == 201, scan.text
    assert client.post(f"/api/patients/{known}/analyze").status_code == 503


def test_analysing_for_an_empty_patient_id_is_a_422_not_an_analysis_of_no_patient(
    client: TestClient,
) -> None:
    """An empty id in JSON is no patient's: the image is not analysed unfiled, as it was.
    A form's empty field is one left blank (browsers send every field): no patient, as
    FastAPI reads forms; here, without a model, the 503 an upload without one gets."""
    image = "data:image/png;base64," + base64.b64encode(png_bytes((40, 30))).decode()
    analysed = client.post("/api/ai/analyze", json={"image_base64": image, "patientId": ""})
    uploaded = client.post(
        "/api/ai/analyze-upload",
        files={"file": ("a.png", png_bytes((40, 30)), "image/png")},
        data={"patient_id": ""},
    )

    assert analysed.status_code == 422, analysed.text
    assert [e["field"] for e in analysed.json()["errors"]] == ["patientId"]
    assert "must not be empty" in analysed.json()["message"]
    assert uploaded.status_code == 503, uploaded.text
    assert client.get("/api/jobs").json() == []


@pytest.mark.parametrize("age", [True, False])
def test_an_age_of_true_or_false_is_refused_not_read_as_a_number(
    client: TestClient, age: bool
) -> None:
    created = client.post("/api/patients", json={"name": "Ada", "age": age})
    patched = client.patch(f"/api/patients/{_patient(client)}", json={"age": age})
    for response in (created, patched):
        assert _fields(response) == ["age"]
        assert "whole number of years" in response.json()["message"]
    assert client.post("/api/patients", json={"name": "Ada", "age": "41"}).json()["age"] == 41


@pytest.mark.parametrize("value", [True, False])
def test_a_measurement_of_true_or_false_is_refused_not_stored_as_1_or_0(
    client: TestClient, value: bool
) -> None:
    patient_id = _patient(client)
    for name in ("iop", "cupToDiscRatio", "rnfl_thickness", "density"):
        response = client.post(
            f"/api/patients/{patient_id}/oculomics",
            json={"eye": "OD", "measuredOn": "2026-01-01", name: value},
        )
        assert _fields(response) == [name]
        assert "not true or false" in response.json()["message"]
    assert client.get(f"/api/patients/{patient_id}").json()["oculomics"] is None


def test_a_workflow_step_of_true_is_refused_not_read_as_step_1(client: TestClient) -> None:
    patient_id = _patient(client)
    client.patch(f"/api/patients/{patient_id}", json={"workflowStep": 2})

    response = client.patch(f"/api/patients/{patient_id}", json={"workflowStep": True})

    assert _fields(response) == ["workflowStep"]
    assert client.get(f"/api/patients/{patient_id}").json()["workflowStep"] == 2


@pytest.mark.parametrize("value", [1, 0, "true", "yes", "off"])
def test_a_number_or_text_where_a_boolean_goes_is_refused_not_read_as_one(
    client: TestClient, sqlite_services: Application, value: object
) -> None:
    """The mirror of a number's check: pydantic's lax bool read ``{"approved": 1}`` as
    an approval and ``{"read": "off"}`` as unread. A JSON body says true or false; the
    seed's query form (``?approved=true``) keeps FastAPI's rules."""
    patient_id = _patient(client)
    add_analysis(sqlite_services, patient_id)
    note = client.post("/api/notifications", json={"message": "scan", "patientId": patient_id})

    verdict = client.post(f"/api/patients/{patient_id}/validate", json={"approved": value})
    marked = client.patch(f"/api/notifications/{note.json()['id']}/read", json={"read": value})

    assert _fields(verdict) == ["approved"] and _fields(marked) == ["read"]
    assert "must be true or false" in verdict.json()["message"]
    patient = client.get(f"/api/patients/{patient_id}").json()
    assert (patient["validationStatus"], patient["aiAnalysis"]["status"]) == (None, "preliminary")
    assert client.get("/api/notifications/unread-count").json()["count"] == 1
    seed_form = client.post(f"/api/patients/{patient_id}/validate", params={"approved": "true"})
    assert seed_form.json()["validationStatus"] == "approved"


def test_a_scan_id_of_true_is_refused_not_read_as_scan_1(client: TestClient) -> None:
    patient_id = _patient(client)
    scan = client.post(
        f"/api/patients/{patient_id}/scans", files={"file": ("a.png", png_bytes(), "image/png")}
    ).json()
    assert scan["id"] == 1  # so that true, read as 1, would name it

    response = client.post(f"/api/patients/{patient_id}/analyze", json={"scanId": True})

    assert _fields(response) == ["scanId"]
    assert client.get("/api/jobs").json() == []


@pytest.mark.parametrize("name", ["birthDate", "birth_date"])
def test_a_field_the_services_refuse_is_named_as_the_body_spelled_it(
    client: TestClient, name: str
) -> None:
    patient_id = _patient(client)

    response = client.patch(f"/api/patients/{patient_id}", json={name: "2999-01-01"})

    assert _fields(response) == [name]
    payload = response.json()
    assert payload["errors"][0]["loc"] == ["body", name]
    assert payload["field"] == name
    assert payload["message"] == f"{name}: the birth date is in the future"


@pytest.mark.parametrize("name", ["appointmentDate", "appointment_date"])
def test_a_query_parameter_the_services_refuse_is_named_as_sent(
    client: TestClient, name: str
) -> None:
    patient_id = _patient(client)

    response = client.post(
        f"/api/patients/{patient_id}/schedule", params={name: "2001-01-01T10:00:00Z"}
    )

    assert _fields(response) == [name]
    assert response.json()["errors"][0]["loc"] == ["query", name]
    assert response.json()["message"] == f"{name}: the appointment is in the past"


def test_a_renamed_query_parameter_that_fails_validation_is_named_as_sent(
    client: TestClient,
) -> None:
    response = client.get("/api/notifications", params={"unreadOnly": "maybe"})

    assert _fields(response) == ["unreadOnly"]
    assert response.json()["errors"][0]["loc"] == ["query", "unreadOnly"]
    assert _fields(client.get("/api/patients", params={"orderBy": "shoe size"})) == ["orderBy"]


def test_an_unchanged_image_revalidates_as_304_and_a_new_scan_as_200(
    client: TestClient,
) -> None:
    patient_id = _patient(client)
    client.post(f"/api/patients/{patient_id}/scans", files={"file": ("a.png", png_bytes((30, 20)))})
    url = f"/api/patients/{patient_id}/image"
    first = client.get(url)
    etag = first.headers["etag"]

    again = client.get(url, headers={"If-None-Match": etag})
    weak = client.get(url, headers={"If-None-Match": f'"other", W/{etag}'})
    scan_id = client.get(f"/api/patients/{patient_id}/scans").json()[0]["id"]
    scan_url = f"/api/patients/{patient_id}/scans/{scan_id}/image"
    scan_again = client.get(
        scan_url, headers={"If-None-Match": client.get(scan_url).headers["etag"]}
    )

    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag and again.headers["cache-control"] == "private, no-cache"
    assert weak.status_code == 304
    on_two_lines = client.get(url, headers=[("If-None-Match", '"other"'), ("If-None-Match", etag)])
    assert on_two_lines.status_code == 304  # the lines are one list
    assert scan_again.status_code == 304 and "immutable" in scan_again.headers["cache-control"]
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200

    client.post(f"/api/patients/{patient_id}/scans", files={"file": ("b.png", png_bytes((31, 20)))})
    newer = client.get(url, headers={"If-None-Match": etag})

    assert newer.status_code == 200 and newer.content != first.content
    assert newer.headers["etag"] != etag


def test_a_query_parameter_sent_twice_differently_is_a_422_not_a_guess(
    client: TestClient,
) -> None:
    patient_id = _patient(client)

    twice = client.get("/api/patients", params=[("limit", "10"), ("limit", "20")])
    assert _fields(twice) == ["limit"]
    # The field is named once, and the message says what to do.
    assert twice.json()["message"] == (
        "limit: given more than once, with different values; send it once"
    )
    mixed = client.get(
        "/api/notifications", params=[("patientId", patient_id), ("patient_id", "pt-other")]
    )
    assert _fields(mixed) == ["patient_id"]
    # Both spellings named, as a body key given twice names them.
    assert mixed.json()["message"] == (
        "patient_id: given twice, with different values, as patientId and patient_id; "
        "send one of them"
    )
    same = client.get("/api/patients", params=[("limit", "5"), ("limit", "5")])
    assert same.status_code == 200


def test_a_body_key_sent_in_two_spellings_says_so_not_that_it_is_unknown(
    client: TestClient,
) -> None:
    """Both spellings are accepted alone; sent together, the 422 names the key pydantic
    did not read as given twice rather than as an input "not permitted"."""
    patient_id = _patient(client)
    both = {"name": "Twice", "birthDate": "1980-01-01", "birth_date": "1990-01-01"}
    response = client.post("/api/patients", json=both)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["field"] == "birth_date"
    assert error["msg"] == "given twice, as birthDate and birth_date; send one of them"
    measured = client.post(
        f"/api/patients/{patient_id}/oculomics",
        json={"eye": "OD", "date": "2025-01-01", "iopMmhg": 12, "iop": 13},
    )
    assert measured.json()["message"] == "iop: given twice, as iopMmhg and iop; send one of them"
    unknown = client.post("/api/patients", json={"name": "Typo", "nmae": "x"})
    assert unknown.json()["message"].startswith("nmae: this endpoint takes no such field (")


@pytest.mark.parametrize(
    ("path", "kwargs", "field"),
    [
        ("/api/patients/{pid}/oculomics", {"json": {"eye": "OD", "iop": 15}}, "measuredOn"),
        ("/api/patients/{pid}/schedule", {"json": {}}, "appointmentDate"),
        ("/api/patients/{pid}/schedule", {}, "appointmentDate"),  # no body, no query
        ("/api/patients/{pid}/validate", {"json": {"notes": "n"}}, "approved"),
        ("/api/patients/{pid}/validate", {}, "approved"),
        ("/api/patients/{pid}/scans", {"files": {"modality": (None, "OCT")}}, "file"),
        ("/api/ai/analyze", {"json": {"question": "Edema?"}}, "imageBase64"),
        ("/api/ai/analyze-upload", {"files": {"question": (None, "Edema?")}}, "file"),
        ("/api/patients", {"json": {"age": 3}}, "name"),
        ("/api/notifications", {"json": {"type": "info"}}, "message"),
    ],
    ids=[
        "oculomics",
        "schedule-empty-body",
        "schedule-nothing",
        "validate-body",
        "validate-nothing",
        "scan-upload",
        "ai-analyze",
        "ai-upload",
        "patient",
        "notification",
    ],
)
def test_a_required_field_left_out_is_named_in_camel_case_on_every_route(
    client: TestClient, path: str, kwargs: dict[str, Any], field: str
) -> None:
    """The wire is camelCase: a 422 for a field left out names it so, whichever layer
    (FastAPI's validation or a service) noticed, and wherever it could have been sent."""
    response = client.post(path.format(pid=_patient(client)), **kwargs)

    assert response.status_code == 422, response.text
    [error] = response.json()["errors"]
    assert (error["loc"], error["field"]) == (["body", field], field)
    assert response.json()["message"].startswith(f"{field}: ")


def test_a_stored_value_that_contradicts_a_sent_one_is_named_in_camel_case(
    client: TestClient,
) -> None:
    patient_id = _patient(client, birthDate="1980-01-01")

    response = client.patch(f"/api/patients/{patient_id}", json={"age": 12})

    assert _fields(response) == ["age", "birthDate"]  # the stored one, as the wire names it
    assert [e["loc"] for e in response.json()["errors"]] == [["body", "age"], ["body", "birthDate"]]


def test_a_form_field_a_route_refuses_is_located_in_the_body_as_sent(client: TestClient) -> None:
    response = client.post(
        "/api/ai/analyze-upload",
        files={
            "file": ("a.png", png_bytes((16, 16)), "image/png"),
            "patientId": (None, "pt-a"),
            "patient_id": (None, "pt-b"),
        },
    )

    assert _fields(response) == ["patient_id"]
    assert response.json()["errors"][0]["loc"] == ["body", "patient_id"]


def test_422_fields_name_the_request_not_pydantics_types(client: TestClient) -> None:
    symptoms = client.post("/api/patients", json={"name": "A", "symptoms": [1, "ok"]})
    age = client.post("/api/patients", json={"name": "A", "age": True})

    assert _fields(symptoms) == ["symptoms.0", "symptoms"]  # a list of text, or text
    assert _fields(age) == ["age"]
    assert not age.json()["errors"][0]["msg"].startswith("Value error")


def test_a_value_an_optional_field_does_not_take_is_not_told_to_be_null(
    client: TestClient,
) -> None:
    """``status: "Review"`` was answered "Input should be 'Critical', ...; status: Input
    should be None", as if the status had to be null: pydantic's try of the union's
    ``None``. Null is still refused as such where the field cannot be cleared."""
    patient_id = _patient(client)

    created = client.post("/api/patients", json={"name": "A", "status": "Review"})
    patched = client.patch(f"/api/patients/{patient_id}", json={"status": "Review"})

    for response in (created, patched):
        assert response.status_code == 422
        assert _fields(response) == ["status"]
        assert "should be None" not in response.json()["message"]
        assert (
            "'Critical', 'Stable', 'Pending Analysis' or 'Discharged'"
            in (response.json()["message"])
        )


def test_a_time_an_optional_field_cannot_read_is_not_told_to_be_null(
    client: TestClient,
) -> None:
    """``admissionDate: "soon"`` was answered "admissionDate.datetime: Input should be a
    valid datetime ...; admissionDate: Input should be None": pydantic's type name in the
    field, and its try of the union's ``None`` read as if the date had to be null."""
    patient_id = _patient(client)

    created = client.post("/api/patients", json={"name": "A", "admissionDate": "soon"})
    patched = client.patch(f"/api/patients/{patient_id}", json={"admissionDate": "soon"})

    for response in (created, patched):
        assert _fields(response) == ["admissionDate"]
        assert "should be None" not in response.json()["message"]
        assert "valid datetime" in response.json()["message"]


def test_control_characters_in_text_are_a_422_tabs_and_line_breaks_are_not(
    client: TestClient,
) -> None:
    nul = client.post("/api/patients", json={"name": "Ada\u0000Lovelace"})
    bell = client.post("/api/patients", json={"name": "Ada", "symptoms": ["blur", "x\u0007"]})
    fine = client.post("/api/patients", json={"name": "Ada", "history": "a\tb\r\nc"})

    assert _fields(nul) == ["name"] and "control character" in nul.json()["message"]
    assert _fields(bell) == ["symptoms"]
    assert fine.status_code == 201 and fine.json()["history"] == "a\tb\r\nc"
    assert client.get("/api/patients").headers["X-Total-Count"] == "1"


def test_a_body_that_is_not_utf8_says_what_to_send(client: TestClient) -> None:
    response = client.post(
        "/api/patients",
        content=b'{"name": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["message"].startswith("the body could not be read: send JSON as UTF-8")


PATIENT_JSON = '{"name": "Ada", "history": "h\u00e9"}'


@pytest.mark.parametrize(
    "body",
    [
        codecs.BOM_UTF16_LE + PATIENT_JSON.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + PATIENT_JSON.encode("utf-16-be"),
        codecs.BOM_UTF32_LE + PATIENT_JSON.encode("utf-32-le"),
        codecs.BOM_UTF32_BE + PATIENT_JSON.encode("utf-32-be"),
        codecs.BOM_UTF16_LE + PATIENT_JSON.encode(),  # a mark, then UTF-8 text
        PATIENT_JSON.encode("utf-16-le"),  # no mark: told apart by its zero bytes
    ],
    ids=["utf16le", "utf16be", "utf32le", "utf32be", "utf16-mark-on-utf8", "utf16-no-mark"],
)
def test_a_body_in_utf16_or_utf32_is_a_400_as_other_non_utf8_bodies(
    client: TestClient, body: bytes
) -> None:
    """JSON is UTF-8 (RFC 8259): these were stored (read as UTF-16 or UTF-32), or a
    422 'not valid JSON' when the guess went wrong, not the 400 other bodies get."""
    patient_id = _patient(client)
    not_utf8 = client.post(
        "/api/patients",
        content=b'{"name": "\xff"}',
        headers={"Content-Type": "application/json"},
    )

    created = client.post(
        "/api/patients", content=body, headers={"Content-Type": "application/json"}
    )
    patched = client.patch(
        f"/api/patients/{patient_id}", content=body, headers={"Content-Type": "application/json"}
    )
    untyped = client.post("/api/patients", content=body)  # FastAPI reads it as JSON too

    assert not_utf8.status_code == 400
    for response in (created, patched, untyped):
        assert response.status_code == 400, response.text
        assert response.json() == not_utf8.json()
    assert client.get("/api/patients").headers["X-Total-Count"] == "1"
    assert client.get(f"/api/patients/{patient_id}").json()["history"] == ""


def test_a_utf8_body_with_a_byte_order_mark_is_read(client: TestClient) -> None:
    """RFC 8259 lets a parser ignore the UTF-8 mark; refusing it would gain nothing."""
    response = client.post(
        "/api/patients",
        content=codecs.BOM_UTF8 + PATIENT_JSON.encode(),
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 201, response.text
    assert response.json()["history"] == "h\u00e9"


@pytest.mark.parametrize("order_by", ["admission_date", "admissionDate"])
@pytest.mark.parametrize("name", ["order_by", "orderBy"])
def test_the_sort_key_is_taken_in_either_spelling(
    client: TestClient, name: str, order_by: str
) -> None:
    for who, admitted in (("Later", "2026-03-01T09:00:00Z"), ("Earlier", "2026-01-01T09:00:00Z")):
        client.post("/api/patients", json={"name": who, "admissionDate": admitted})

    response = client.get("/api/patients", params={name: order_by, "descending": "false"})

    assert response.status_code == 200, response.text
    assert [p["name"] for p in response.json()] == ["Earlier", "Later"]


@pytest.mark.parametrize("order_by", ["birthDate", "birth_date"])
def test_patients_sort_by_birth_date_with_those_without_one_last(
    client: TestClient, order_by: str
) -> None:
    for name, born in (("Young", "2001-02-03"), ("Unknown", None), ("Old", "1950-06-07")):
        _patient(client, name=name, birthDate=born)

    def names(descending: bool) -> list[str]:
        response = client.get(
            "/api/patients", params={"orderBy": order_by, "descending": str(descending).lower()}
        )
        assert response.status_code == 200, response.text
        return [p["name"] for p in response.json()]

    assert names(descending=False) == ["Old", "Young", "Unknown"]
    assert names(descending=True) == ["Young", "Old", "Unknown"]


def test_an_unknown_sort_key_is_a_422_naming_the_parameter_as_sent(client: TestClient) -> None:
    response = client.get("/api/patients", params={"orderBy": "shoeSize"})

    assert response.status_code == 422
    assert response.json()["field"] == "orderBy"
    assert "admissionDate" in response.json()["message"]
    assert "birthDate" in response.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("put", "/api/patients/{pid}", {"GET", "HEAD", "PATCH", "DELETE"}),
        ("post", "/api/patients/{pid}/", {"GET", "HEAD", "PATCH", "DELETE"}),
        ("put", "/api/patients", {"GET", "HEAD", "POST"}),
        ("delete", "/api/patients/{pid}/scans", {"GET", "HEAD", "POST"}),
        ("get", "/api/notifications/1/read", {"PATCH"}),
        ("head", "/api/ai/load-model", {"POST"}),  # served as GET, which it does not take
        # A fixed path is not an id of the route beside it ({notification_id}): once a
        # 422 for an id that is not a number, and a POST's Allow named the id's methods.
        ("delete", "/api/notifications/mark-all-read", {"PATCH"}),
        ("get", "/api/notifications/mark-all-read/", {"PATCH"}),
        ("post", "/api/notifications/mark-all-read", {"PATCH"}),
        ("delete", "/api/notifications/unread-count", {"GET", "HEAD"}),
        ("post", "/api/notifications/unread-count/", {"GET", "HEAD"}),
    ],
)
def test_a_405_allows_every_method_the_path_takes(
    client: TestClient, method: str, path: str, allowed: set[str]
) -> None:
    """RFC 9110 §15.5.6: Allow lists the target's methods, not one route's."""
    pid = client.post("/api/patients", json={"name": "Ada"}).json()["id"]

    response = client.request(method, path.format(pid=pid))

    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed


#: The modules whose routers the app includes (health's has no parameters).
ROUTE_MODULES = (patients, notifications, ai, audit)


def test_no_fixed_path_is_taken_for_the_id_of_the_route_beside_it(client: TestClient) -> None:
    """Every route without a parameter whose path an ``{id}`` route's pattern also
    matches (``/api/notifications/mark-all-read`` and ``/{notification_id}``): each method
    it does not take is a 405 naming the ones it does, never the id's answer."""
    routes = [route for module in ROUTE_MODULES for route in module.router.routes]
    patterns = [r for r in routes if isinstance(r, APIRoute) and r.param_convertors]
    fixed = {
        route.path
        for route in routes
        if isinstance(route, APIRoute | APIWebSocketRoute)
        and not route.param_convertors
        and any(p.path_regex.match(route.path) for p in patterns)
    }
    assert "/api/notifications/mark-all-read" in fixed  # what this test is about
    for path in sorted(fixed):
        taken = {m for r in routes if isinstance(r, APIRoute) and r.path == path for m in r.methods}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - taken:
            response = client.request(method, path)
            if not taken:  # the WebSocket's path: every HTTP method is told to upgrade
                assert response.status_code == 426, (method, path, response.text)
                continue
            assert response.status_code == 405, (method, path, response.text)
            allowed = {m.strip() for m in response.headers["allow"].split(",")}
            assert allowed == taken | ({"HEAD"} if "GET" in taken else set()), (method, path)


def test_an_id_that_is_not_a_number_is_still_a_422_naming_it(client: TestClient) -> None:
    response = client.delete("/api/notifications/mark-all-reads")

    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "notification_id"


def test_the_docs_assets_allow_get_and_head(client: TestClient) -> None:
    response = client.delete("/docs-static/swagger-ui.css")

    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"


def test_a_body_with_countless_problems_lists_the_first_ones_and_counts_the_rest(
    client: TestClient,
) -> None:
    """Each wrong value of a 2 MB body once became a listed problem: a million of them
    held the server's event loop for 16 s and answered 338 MB."""
    response = client.post("/api/patients", json={"name": "Ada", "symptoms": [1] * 100_000})

    fields = _fields(response)
    assert len(fields) == MAX_LISTED_PROBLEMS
    assert fields[:2] == ["symptoms.0", "symptoms.1"]
    assert len(response.content) < 20_000
    assert response.json()["message"].endswith(f"and {100_001 - MAX_LISTED_PROBLEMS:,} more")
    assert client.get("/api/patients").headers["X-Total-Count"] == "0"


@pytest.mark.parametrize("written", ["1_0", "1.0", "+1", " 1", "0x1"])
def test_an_id_or_a_page_size_is_read_from_digits_alone(client: TestClient, written: str) -> None:
    """pydantic read ``1_0`` as 10 and ``1.0``, ``+1``, `` 1`` as 1: a mistyped id named
    another record (``DELETE /api/notifications/1_0`` deleted notification 10)."""
    response = client.delete(f"/api/notifications/{written}")
    listed = client.get("/api/patients", params={"limit": written})

    assert response.status_code == 422
    assert response.json()["message"] == (
        "notification_id: a whole number written in the digits 0-9"
    )
    assert listed.status_code == 422
    assert listed.json()["field"] == "limit"
    assert client.delete("/api/notifications/10").status_code == 404  # read as digits
