"""Patients over REST: the seed's endpoints, their shapes, paging, validation and errors."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.storage.models import Analysis, Patient

#: The patient keys DESIGN §4 promises the seed's frontends.
SEED_PATIENT_KEYS = {
    "id",
    "name",
    "age",
    "gender",
    "admissionDate",
    "symptoms",
    "status",
    "imageUrl",
    "history",
    "oculomics",
    "aiAnalysis",
    "validationStatus",
    "appointmentDate",
    "workflowStep",
}
CAMEL_CASE = re.compile(r"^[a-z][a-zA-Z0-9]*$")
SLASHES = pytest.mark.parametrize("slash", ["", "/"], ids=["bare", "trailing-slash"])


def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/patients", json={"name": "Ada Lovelace", **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def add_analysis(services: Application, patient_id: str) -> int:
    """Test setup: an analysis row as the inference worker would store it (there is no
    public way to create one without the model)."""
    with services.db.session() as session:
        row = Analysis(
            patient_id=patient_id,
            model_id="OctoMed/OctoMed-7B",
            prompt_version="test-1",
            parse_status="parsed",
            reasoning_text="the cup is enlarged",
            answer_text='{"classification": "Glaucoma suspect"}',
            result={
                "classification": "Glaucoma suspect",
                "confidence": 81,
                "findings": ["enlarged cup"],
                "recommendation": "visual field test",
                "explanation": "C/D above 0.5",
            },
        )
        session.add(row)
        session.flush()
        return row.id


def field_named(body: dict[str, Any], name: str) -> bool:
    """Whether a 422 body points at ``name`` (our error or FastAPI's validation list)."""
    if body.get("field") == name:
        return True
    detail = body.get("detail")
    if isinstance(detail, list):
        return any(e.get("field") == name for e in detail)
    return isinstance(detail, str) and name in detail


# The seed's endpoints, with and without a trailing slash ---------------------------------


@SLASHES
def test_create_and_list_answer_without_redirect(client: TestClient, slash: str) -> None:
    created = client.post(f"/api/patients{slash}", json={"name": "Ada Lovelace", "age": 36})
    assert created.status_code == 201, created.text

    listed = client.get(f"/api/patients{slash}")

    assert listed.status_code == 200
    assert [p["id"] for p in listed.json()] == [created.json()["id"]]
    assert listed.headers["X-Total-Count"] == "1"


@SLASHES
def test_a_created_patient_is_at_its_location(client: TestClient, slash: str) -> None:
    created = client.post(f"/api/patients{slash}", json={"name": "Ada Lovelace"})
    chosen = client.post(f"/api/patients{slash}", json={"name": "Grace", "id": "MRN-0042"})

    assert created.headers["Location"] == f"/api/patients/{created.json()['id']}"
    assert chosen.headers["Location"] == "/api/patients/MRN-0042"
    fetched = client.get(created.headers["Location"])
    assert fetched.json() == created.json()
    assert fetched.headers["ETag"] == created.headers["ETag"]


@SLASHES
def test_get_patch_delete_answer_without_redirect(client: TestClient, slash: str) -> None:
    pid = create(client)["id"]
    url = f"/api/patients/{pid}{slash}"

    fetched = client.get(url)
    patched = client.patch(url, json={"age": 41, "status": "Stable"})
    refetched = client.get(url)
    deleted = client.delete(url)
    gone = client.get(url)

    assert fetched.status_code == 200 and fetched.json()["name"] == "Ada Lovelace"
    assert patched.status_code == 200
    assert refetched.json()["age"] == 41 and refetched.json()["status"] == "Stable"
    assert deleted.status_code == 200
    # The patient's scans, jobs and notifications go too: no count of "things" is given.
    assert deleted.json() == {"message": f"patient {pid} deleted"}
    assert gone.status_code == 404


@SLASHES
def test_validate_with_query_parameter(
    client: TestClient, sqlite_services: Application, slash: str
) -> None:
    pid = create(client)["id"]
    add_analysis(sqlite_services, pid)

    response = client.post(f"/api/patients/{pid}/validate{slash}?approved=true")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["validationStatus"] == "approved"
    assert body["workflowStep"] == 3
    assert body["aiAnalysis"]["status"] == "approved"
    assert body["aiAnalysis"]["classification"] == "Glaucoma suspect"


@SLASHES
def test_validate_with_json_body(
    client: TestClient, sqlite_services: Application, slash: str
) -> None:
    pid = create(client)["id"]
    add_analysis(sqlite_services, pid)

    response = client.post(
        f"/api/patients/{pid}/validate{slash}",
        json={"approved": False, "clinician": "Dr X", "notes": "artefact, rescan"},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["validationStatus"] == "rejected"
    assert body["validatedBy"] == "Dr X"
    assert body["validationNotes"] == "artefact, rescan"
    assert body["aiAnalysis"]["status"] == "rejected"
    assert client.get(f"/api/patients/{pid}").json()["validationStatus"] == "rejected"


def test_validate_without_an_analysis_is_a_conflict(client: TestClient) -> None:
    pid = create(client)["id"]

    response = client.post(f"/api/patients/{pid}/validate?approved=true")

    assert response.status_code == 409
    assert "analysis" in response.json()["detail"]


def test_approving_an_unreadable_answer_is_a_conflict_rejecting_it_is_not(
    client: TestClient, sqlite_services: Application
) -> None:
    """The seed's ``?approved=true`` on an analysis whose answer could not be read (no
    classification) approved nothing; a 409 says why and what to do instead."""
    pid = create(client)["id"]
    with sqlite_services.db.session() as session:
        row = Analysis(patient_id=pid, model_id="OctoMed/OctoMed-7B", parse_status="parse_failed")
        session.add(row)
        session.flush()
        analysis_id = row.id

    approved = client.post(f"/api/patients/{pid}/validate?approved=true")
    patched = client.patch(f"/api/patients/{pid}", json={"validationStatus": "approved"})

    for response in (approved, patched):
        assert response.status_code == 409, response.text
        assert response.json()["detail"] == (
            f"analysis {analysis_id}'s answer could not be read as a result, so there is "
            "nothing to approve; reject it, or analyse the scan again"
        )
    assert client.get(f"/api/patients/{pid}").json()["validationStatus"] is None
    rejected = client.post(f"/api/patients/{pid}/validate", json={"approved": False})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["aiAnalysis"]["status"] == "rejected"


def test_a_rejected_unreadable_answer_then_a_booking_is_not_complete(
    client: TestClient, sqlite_services: Application
) -> None:
    """The rejected answer holds no result: the patient goes back to analysis (1), and
    the follow-up booked then is kept without completing the workflow (it showed 4)."""
    pid = create(client)["id"]
    with sqlite_services.db.session() as session:
        session.add(
            Analysis(patient_id=pid, model_id="OctoMed/OctoMed-7B", parse_status="parse_failed")
        )
    when = (datetime.now(UTC) + timedelta(days=7)).isoformat()

    rejected = client.post(f"/api/patients/{pid}/validate", json={"approved": False})
    booked = client.post(f"/api/patients/{pid}/schedule", json={"appointmentDate": when})

    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["workflowStep"] == 1
    assert booked.status_code == 200, booked.text
    assert booked.json()["appointmentDate"] is not None
    assert booked.json()["workflowStep"] == 1
    assert booked.json()["status"] == "Pending Analysis"


def test_validate_without_a_verdict_names_the_field(
    client: TestClient, sqlite_services: Application
) -> None:
    pid = create(client)["id"]
    add_analysis(sqlite_services, pid)

    bare = client.post(f"/api/patients/{pid}/validate")
    empty = client.post(f"/api/patients/{pid}/validate", json={})

    for response in (bare, empty):
        assert response.status_code == 422
        assert field_named(response.json(), "approved")
    assert client.get(f"/api/patients/{pid}").json()["validationStatus"] is None


def test_a_birth_date_gives_the_age_and_a_contradiction_names_both_fields(
    client: TestClient,
) -> None:
    born = client.post("/api/patients", json={"name": "Born1950", "birthDate": "1950-06-15"})
    assert born.status_code == 201, born.text
    today = datetime.now().date()
    assert born.json()["age"] == today.year - 1950 - ((today.month, today.day) < (6, 15))

    both = client.post("/api/patients", json={"name": "Both", "age": 50, "birthDate": "1950-01-01"})

    assert both.status_code == 422
    assert [e["field"] for e in both.json()["errors"]] == ["age", "birthDate"]
    assert "1950-01-01" in both.json()["message"]


def test_order_by_name_ignores_case_and_accents(client: TestClient) -> None:
    for name in ("Zoe", "adam", "Eve", "carl", "Émile", "bob", "Ärne", "Dan", "Ann"):
        create(client, name=name)

    listed = client.get("/api/patients", params={"order_by": "name", "descending": "false"})

    assert [p["name"] for p in listed.json()] == [
        "adam", "Ann", "Ärne", "bob", "carl", "Dan", "Émile", "Eve", "Zoe"
    ]  # fmt: skip


@SLASHES
def test_schedule_with_query_parameter(client: TestClient, slash: str) -> None:
    pid = create(client)["id"]

    response = client.post(
        f"/api/patients/{pid}/schedule{slash}", params={"appointment_date": "2030-01-01T10:00:00Z"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["appointmentDate"] in (
        "2030-01-01T10:00:00Z",
        "2030-01-01T10:00:00+00:00",
    )
    # Never analysed nor validated: booked, but the workflow is not complete.
    assert response.json()["workflowStep"] == 1


def test_schedule_completes_the_workflow_only_after_a_verdict(
    client: TestClient, sqlite_services: Application
) -> None:
    pid = create(client)["id"]
    add_analysis(sqlite_services, pid)
    client.post(f"/api/patients/{pid}/validate", params={"approved": "false"})

    response = client.post(
        f"/api/patients/{pid}/schedule", json={"appointmentDate": "2030-01-01T10:00:00Z"}
    )

    assert response.json()["workflowStep"] == 4
    withdrawn = client.patch(f"/api/patients/{pid}", json={"validationStatus": None}).json()
    assert withdrawn["workflowStep"] == 2 and withdrawn["validationStatus"] is None
    assert withdrawn["aiAnalysis"]["status"] == "preliminary"
    assert withdrawn["appointmentDate"] == response.json()["appointmentDate"]


@SLASHES
@pytest.mark.parametrize("key", ["appointment_date", "appointmentDate"])
def test_schedule_with_json_body(client: TestClient, slash: str, key: str) -> None:
    pid = create(client)["id"]

    response = client.post(
        f"/api/patients/{pid}/schedule{slash}", json={key: "2030-01-01T12:00:00+02:00"}
    )

    assert response.status_code == 200, response.text
    stored = datetime.fromisoformat(response.json()["appointmentDate"].replace("Z", "+00:00"))
    assert stored == datetime(2030, 1, 1, 10, 0, tzinfo=UTC)


def test_schedule_refuses_a_naive_datetime_naming_the_field(client: TestClient) -> None:
    pid = create(client)["id"]

    as_query = client.post(
        f"/api/patients/{pid}/schedule", params={"appointment_date": "2030-01-01T10:00:00"}
    )
    as_body = client.post(
        f"/api/patients/{pid}/schedule", json={"appointment_date": "2030-01-01T10:00:00"}
    )

    for response in (as_query, as_body):
        assert response.status_code == 422
        assert field_named(response.json(), "appointment_date")
    assert client.get(f"/api/patients/{pid}").json()["appointmentDate"] is None


def test_schedule_refuses_a_past_date(client: TestClient) -> None:
    pid = create(client)["id"]
    yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()

    response = client.post(f"/api/patients/{pid}/schedule", json={"appointmentDate": yesterday})

    assert response.status_code == 422
    assert field_named(response.json(), "appointmentDate")  # as the request spelled it
    assert "past" in response.json()["detail"]


def test_schedule_without_a_date_names_the_field(client: TestClient) -> None:
    pid = create(client)["id"]

    response = client.post(f"/api/patients/{pid}/schedule")

    assert response.status_code == 422
    # Named as the wire names it (camelCase), as when the body leaves it out.
    assert field_named(response.json(), "appointmentDate")
    assert response.json()["errors"][0]["loc"] == ["body", "appointmentDate"]


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize("name", ["appointmentDate", "appointment_date"])
def test_patch_refuses_an_appointment_in_the_past_as_scheduling_does(
    client: TestClient, name: str
) -> None:
    pid = create(client)["id"]
    etag = client.get(f"/api/patients/{pid}").headers["ETag"]
    past = "2001-01-01T10:00:00Z"

    patched = client.patch(f"/api/patients/{pid}", json={name: past})
    scheduled = client.post(f"/api/patients/{pid}/schedule", json={name: past})

    assert patched.status_code == scheduled.status_code == 422
    assert patched.json() == scheduled.json()  # one rule, one answer
    assert patched.json()["errors"] == [
        {
            "loc": ["body", name],
            "field": name,
            "msg": "the appointment is in the past",
            "type": "value_error",
        }
    ]
    after = client.get(f"/api/patients/{pid}")
    assert after.json()["appointmentDate"] is None and after.headers["ETag"] == etag


def test_patch_books_an_appointment_to_come_and_cancels_with_null(client: TestClient) -> None:
    pid = create(client)["id"]
    soon = datetime.now(UTC) + timedelta(days=3)
    skewed = datetime.now(UTC) - timedelta(minutes=1)  # another machine's clock: allowed

    booked = client.patch(f"/api/patients/{pid}", json={"appointmentDate": _iso(soon)})
    moved = client.patch(f"/api/patients/{pid}", json={"appointmentDate": _iso(skewed)})
    cancelled = client.patch(f"/api/patients/{pid}", json={"appointmentDate": None})

    assert booked.status_code == 200 and booked.json()["appointmentDate"] is not None
    assert moved.status_code == 200, moved.text
    assert cancelled.status_code == 200 and cancelled.json()["appointmentDate"] is None


@pytest.mark.parametrize(
    "sent",
    ["2020-03-01T09:00:26.353Z", "2020-03-01T10:00:00+01:00"],
    ids=["milliseconds", "minutes in another zone"],
)
def test_the_past_appointment_sent_back_as_a_client_kept_it_is_not_refused(
    client: TestClient, sqlite_services: Application, sent: str
) -> None:
    """A JavaScript Date keeps milliseconds, a datetime-local field minutes: the booked
    appointment sent back so was a 422 'in the past' on every later PATCH."""
    pid = create(client)["id"]
    with sqlite_services.db.session() as session:
        row = session.get(Patient, pid)
        assert row is not None
        row.appointment_date = datetime(2020, 3, 1, 9, 0, 26, 353175, tzinfo=UTC)

    response = client.patch(f"/api/patients/{pid}", json={"appointmentDate": sent, "history": "x"})

    assert response.status_code == 200, response.text
    assert response.json()["appointmentDate"].startswith("2020-03-01T09:00:26.353175")


def test_a_patient_sent_back_with_its_appointment_now_past_is_not_refused(
    client: TestClient, sqlite_services: Application
) -> None:
    """Clients PATCH back the whole object they read: the appointment booked, whose day
    has passed since, is no new appointment."""
    pid = create(client, history="before")["id"]
    with sqlite_services.db.session() as session:
        row = session.get(Patient, pid)
        assert row is not None
        row.appointment_date = datetime(2020, 3, 1, 9, 0, tzinfo=UTC)  # booked back then
    read = client.get(f"/api/patients/{pid}").json()

    response = client.patch(f"/api/patients/{pid}", json={**read, "history": "after"})

    assert response.status_code == 200, response.text
    assert response.json()["history"] == "after"
    assert response.json()["appointmentDate"] == "2020-03-01T09:00:00Z"


# Shapes ------------------------------------------------------------------------------------


def test_patient_responses_use_the_seed_camel_case_keys(client: TestClient) -> None:
    created = create(client, admissionDate="2024-03-01T08:30:00Z", symptoms=["blurred vision"])

    for body in (created, client.get(f"/api/patients/{created['id']}").json()):
        assert body.keys() >= SEED_PATIENT_KEYS
        assert all(CAMEL_CASE.match(key) for key in body), sorted(body)
    listed = client.get("/api/patients").json()[0]
    assert listed.keys() >= SEED_PATIENT_KEYS
    assert created["status"] == "Pending Analysis"
    assert created["workflowStep"] == 1
    assert created["symptoms"] == ["blurred vision"]


def test_timestamps_carry_their_zone(client: TestClient) -> None:
    pid = create(client, admission_date="2024-03-01T10:30:00+02:00")["id"]
    client.post(f"/api/patients/{pid}/schedule", json={"appointmentDate": "2030-05-05T09:00:00Z"})

    body = client.get(f"/api/patients/{pid}").json()

    for key in ("admissionDate", "appointmentDate", "createdAt", "updatedAt"):
        assert body[key].endswith(("Z", "+00:00")), (key, body[key])
    assert datetime.fromisoformat(body["admissionDate"].replace("Z", "+00:00")) == datetime(
        2024, 3, 1, 8, 30, tzinfo=UTC
    )


@pytest.mark.parametrize("key", ["admission_date", "admissionDate"])
def test_requests_accept_snake_and_camel_case_keys(client: TestClient, key: str) -> None:
    created = create(client, **{key: "2024-01-02T03:04:05Z"})
    assert created["admissionDate"].startswith("2024-01-02T03:04:05")

    patched = client.patch(
        f"/api/patients/{created['id']}",
        json={"workflow_step": 2} if key == "admission_date" else {"workflowStep": 2},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["workflowStep"] == 2


def test_a_naive_admission_date_names_the_field(client: TestClient) -> None:
    response = client.post(
        "/api/patients", json={"name": "Ada", "admissionDate": "2024-01-01T00:00:00"}
    )

    assert response.status_code == 422
    assert field_named(response.json(), "admissionDate")
    assert client.get("/api/patients").headers["X-Total-Count"] == "0"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/api/patients", {"name": "Ada", "favouriteColour": "teal"}),
        ("patch", "/api/patients/{pid}", {"favouriteColour": "teal"}),
        ("post", "/api/patients/{pid}/validate", {"approved": True, "favouriteColour": "teal"}),
        (
            "post",
            "/api/patients/{pid}/schedule",
            {"appointmentDate": "2030-01-01T10:00:00Z", "favouriteColour": "teal"},
        ),
        ("post", "/api/notifications", {"message": "hi", "favouriteColour": "teal"}),
    ],
    ids=["create", "update", "validate", "schedule", "notification"],
)
def test_unknown_keys_are_refused_by_name(
    client: TestClient, method: str, path: str, body: dict[str, Any]
) -> None:
    pid = create(client)["id"]
    before = client.get(f"/api/patients/{pid}").json()

    response = client.request(method, path.format(pid=pid), json=body)

    assert response.status_code == 422
    assert "favouriteColour" in response.text
    assert client.get("/api/patients").headers["X-Total-Count"] == "1"
    assert client.get(f"/api/patients/{pid}").json() == before


def test_a_body_that_is_not_json_is_a_422_with_a_message(client: TestClient) -> None:
    response = client.post(
        "/api/patients", content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 422
    assert "not valid JSON" in response.json()["message"]


def test_a_body_that_is_not_json_says_where(client: TestClient) -> None:
    """A new user's trial: ``{"name": "Ann"`` cut short was a 422 saying "the body is not
    valid JSON (Expecting ',' delimiter)", with an empty field: not where, nor that the
    body ended before its JSON did."""
    as_json = {"Content-Type": "application/json"}

    cut_short = client.post("/api/patients", content=b'{"name": "Ann"', headers=as_json)
    trailing_comma = client.post("/api/patients", content=b'{"name": "Ann",}', headers=as_json)

    assert cut_short.status_code == trailing_comma.status_code == 422
    ends = "the body is not valid JSON: it ends at character 14, before the JSON is complete"
    assert cut_short.json()["message"] == f"body: {ends}"
    assert cut_short.json()["errors"] == [
        {"loc": ["body", 14], "field": "", "msg": ends, "type": "json_invalid"}
    ]
    assert trailing_comma.json()["message"] == (
        "body: the body is not valid JSON (at character 15: Expecting property name "
        "enclosed in double quotes)"
    )
    assert client.get("/api/patients").headers["X-Total-Count"] == "0"


# Paging and filtering ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/patients", "/api/notifications", "/api/audit"])
@pytest.mark.parametrize("query", ["limit=0", "limit=501", "skip=-1"])
def test_paging_is_bounded(client: TestClient, path: str, query: str) -> None:
    response = client.get(f"{path}?{query}")

    assert response.status_code == 422
    assert query.split("=")[0] in response.text


def test_total_count_follows_search_and_status(client: TestClient) -> None:
    create(client, name="Grace Hopper", status="Critical")
    create(client, name="Grace Kelly", status="Stable")
    create(client, name="Alan Turing", status="Critical")

    everyone = client.get("/api/patients?limit=1")
    graces = client.get("/api/patients", params={"search": "grace", "limit": 1})
    critical = client.get("/api/patients", params={"status": "Critical"})
    both = client.get("/api/patients", params={"status": "Critical", "search": "GRACE"})
    second_page = client.get("/api/patients", params={"search": "grace", "skip": 1})

    assert everyone.headers["X-Total-Count"] == "3" and len(everyone.json()) == 1
    assert graces.headers["X-Total-Count"] == "2" and len(graces.json()) == 1
    assert {p["name"] for p in critical.json()} == {"Grace Hopper", "Alan Turing"}
    assert critical.headers["X-Total-Count"] == "2"
    assert [p["name"] for p in both.json()] == ["Grace Hopper"]
    assert both.headers["X-Total-Count"] == "1"
    assert len(second_page.json()) == 1
    assert second_page.json()[0]["name"] != graces.json()[0]["name"]


def test_search_typed_without_accents_finds_the_accented_name(client: TestClient) -> None:
    create(client, name="José Müller")
    create(client, name="Grace Hopper")

    found = client.get("/api/patients", params={"search": "jose muller"})

    assert [p["name"] for p in found.json()] == ["José Müller"]
    assert found.headers["X-Total-Count"] == "1"


@pytest.mark.parametrize("pattern", ["%", "_", "\\"])
def test_search_treats_wildcards_as_text(client: TestClient, pattern: str) -> None:
    create(client, name="Grace Hopper")
    create(client, name=f"odd{pattern}name")

    found = client.get("/api/patients", params={"search": pattern}).json()

    assert [p["name"] for p in found] == [f"odd{pattern}name"]


def test_an_unknown_status_filter_is_refused(client: TestClient) -> None:
    response = client.get("/api/patients", params={"status": "Asleep"})

    assert response.status_code == 422
    assert "status" in response.text


# Missing records ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("get", "/api/patients/nobody", {}),
        ("patch", "/api/patients/nobody", {"json": {"age": 3}}),
        ("delete", "/api/patients/nobody", {}),
        ("post", "/api/patients/nobody/validate?approved=true", {}),
        ("post", "/api/patients/nobody/schedule?appointment_date=2030-01-01T10:00:00Z", {}),
        ("get", "/api/patients/nobody/image", {}),
        ("get", "/api/patients/nobody/scans", {}),
        ("get", "/api/patients/nobody/oculomics", {}),
        ("get", "/api/notifications/999", {}),
        ("patch", "/api/notifications/999/read", {}),
        ("delete", "/api/notifications/999", {}),
    ],
)
def test_unknown_ids_are_404_with_a_json_detail(
    client: TestClient, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    response = client.request(method, path, **kwargs)

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_a_duplicate_id_is_a_conflict(client: TestClient) -> None:
    create(client, id="pt-0001")

    again = client.post("/api/patients", json={"id": "pt-0001", "name": "Someone Else"})

    assert again.status_code == 409
    assert client.get("/api/patients/pt-0001").json()["name"] == "Ada Lovelace"


# Delete ------------------------------------------------------------------------------------


def test_delete_removes_the_patients_notifications_and_measurements(client: TestClient) -> None:
    pid = create(client)["id"]
    other = create(client, name="Bob")["id"]
    for patient in (pid, other):
        assert client.post(
            "/api/notifications", json={"message": "scan ready", "patientId": patient}
        ).is_success
        assert client.post(
            f"/api/patients/{patient}/oculomics",
            json={"eye": "OD", "date": "2024-01-01", "iop": 18},
        ).is_success

    assert client.delete(f"/api/patients/{pid}").status_code == 200

    assert client.get("/api/notifications", params={"patient_id": pid}).json() == []
    remaining = client.get("/api/notifications").json()
    assert [n["patientId"] for n in remaining] == [other]
    assert client.get(f"/api/patients/{pid}/oculomics").status_code == 404
    assert len(client.get(f"/api/patients/{other}/oculomics").json()["measurements"]["OD"]) == 1
    assert client.delete(f"/api/patients/{pid}").status_code == 404


def test_patch_ai_analysis_stores_a_client_supplied_result(client: TestClient) -> None:
    patient = client.post("/api/patients", json={"name": "Seed Frontend"}).json()
    result = {
        "classification": "Glaucoma suspect",
        "confidence": 71,
        "findings": ["thin RNFL"],
        "recommendation": "Visual fields",
        "explanation": "Inferior RNFL thinning.",
    }
    response = client.patch(
        f"/api/patients/{patient['id']}", json={"aiAnalysis": result, "workflowStep": 2}
    )
    assert response.status_code == 200, response.text
    stored = response.json()["aiAnalysis"]
    assert stored["classification"] == "Glaucoma suspect"
    assert stored["parse_status"] == "client_supplied"
    # Sending the whole object back (with its analysis_id) stores nothing new.
    again = client.patch(f"/api/patients/{patient['id']}", json=response.json())
    assert again.json()["aiAnalysis"]["analysis_id"] == stored["analysis_id"]
    bad = client.patch(f"/api/patients/{patient['id']}", json={"aiAnalysis": {"findings": []}})
    assert bad.status_code == 422
    assert bad.json()["field"] == "aiAnalysis"


def test_an_ai_analysis_key_the_api_does_not_take_is_refused_not_dropped(
    client: TestClient, sqlite_services: Application
) -> None:
    """A key of ``aiAnalysis`` the API neither reads nor writes (``severity``) was
    dropped without a word; it is a 422 naming it, and nothing of the request is
    applied. Every key the API writes in an AI result is still taken back: the
    patient's ``aiAnalysis`` as read, ``/api/analyses/{id}`` with its provenance,
    ``/api/ai/analyze``'s ``job_id`` and ``patient_id``."""
    patient = create(client, history="none")
    url = f"/api/patients/{patient['id']}"
    sent = {"classification": "DME", "confidence": 80, "severity": "high"}

    refused = client.patch(url, json={"aiAnalysis": sent, "history": "diabetic"})

    assert refused.status_code == 422, refused.text
    assert [error["field"] for error in refused.json()["errors"]] == ["aiAnalysis"]
    assert "no such key: severity" in refused.json()["message"]
    after = client.get(url).json()
    assert (after["aiAnalysis"], after["history"]) == (None, "none")

    analysis_id = add_analysis(sqlite_services, patient["id"])
    read = client.get(url).json()
    assert client.patch(url, json=read).status_code == 200
    full = client.get(f"/api/analyses/{analysis_id}").json()
    analyzed = {**full, "job_id": 7, "patient_id": patient["id"]}
    for whole in (full, analyzed):
        taken = client.patch(url, json={"aiAnalysis": whole})
        assert taken.status_code == 200, taken.text
    extra = client.patch(url, json={"aiAnalysis": {**full, "grade": 2}})
    assert "no such key: grade" in extra.json()["message"]
    assert len(sqlite_services.patients.list_analyses(patient["id"])) == 1


def test_a_client_supplied_result_after_a_verdict_awaits_review(client: TestClient) -> None:
    """The verdict was on the analysis before: the new result is preliminary and the
    patient back at validation, as after a model's new result; a verdict sent with the
    new result is on that result."""
    patient = client.post("/api/patients", json={"name": "Second Opinion"}).json()
    url = f"/api/patients/{patient['id']}"
    first = {"classification": "Normal", "confidence": 90, "findings": []}
    client.patch(url, json={"aiAnalysis": first})
    client.post(f"{url}/validate", json={"approved": True, "clinician": "Dr X", "notes": "ok"})

    second = {"classification": "Glaucoma suspect", "confidence": 71, "findings": []}
    after = client.patch(url, json={"aiAnalysis": second}).json()

    assert after["aiAnalysis"]["classification"] == "Glaucoma suspect"
    assert after["aiAnalysis"]["status"] == "preliminary"
    assert (after["validationStatus"], after["workflowStep"]) == (None, 2)
    assert (after["validatedBy"], after["validatedAt"], after["validationNotes"]) == (None,) * 3

    third = {"classification": "AMD", "confidence": 60, "findings": []}
    judged = client.patch(url, json={"aiAnalysis": third, "validationStatus": "rejected"}).json()
    assert judged["aiAnalysis"]["classification"] == "AMD"
    assert judged["aiAnalysis"]["status"] == "rejected"
    assert (judged["validationStatus"], judged["workflowStep"]) == ("rejected", 3)


def test_patch_with_a_non_object_ai_analysis_is_refused(client: TestClient) -> None:
    patient = client.post("/api/patients", json={"name": "String Analysis"}).json()
    response = client.patch(f"/api/patients/{patient['id']}", json={"aiAnalysis": "AMD"})
    assert response.status_code == 422
    assert response.json()["field"] == "aiAnalysis"


def add_analysis_with_confidence(
    services: Application, patient_id: str | None, confidence: float = 1.0
) -> int:
    """Test setup: an analysis whose stored confidence is exactly 1 (the model answered
    "1%"; or an integer 1, read as 1% before such a 1 was refused as ambiguous), or
    another ``confidence`` as stored."""
    with services.db.session() as session:
        row = Analysis(
            patient_id=patient_id,
            model_id="OctoMed/OctoMed-7B",
            prompt_version="test-1",
            parse_status="parsed",
            answer_text=f'{{"classification": "Drusen", "confidence": "{confidence:g}%"}}',
            result={
                "classification": "Drusen",
                "confidence": confidence,
                "findings": ["small drusen"],
                "recommendation": "routine review",
                "explanation": "few small drusen",
            },
        )
        session.add(row)
        session.flush()
        return row.id


@pytest.mark.parametrize("confidence", [1.0, 0.5])
def test_an_analysis_sent_back_as_stored_keeps_its_confidence_of_1_or_below(
    client: TestClient, sqlite_services: Application, confidence: float
) -> None:
    """The server's own stored 1 (1%) is no ambiguous answer: a client attaching the
    result /api/ai/analyze gave it (read here from /api/analyses) stores it as it was;
    a stored 0.5 (0.5%) stays 0.5, not read again as a fraction (50%)."""
    patient = create(client)
    analysis_id = add_analysis_with_confidence(sqlite_services, None, confidence)
    result = client.get(f"/api/analyses/{analysis_id}").json()

    response = client.patch(f"/api/patients/{patient['id']}", json={"aiAnalysis": result})

    assert response.status_code == 200, response.text
    stored = response.json()["aiAnalysis"]
    assert stored["analysis_id"] != analysis_id
    assert (stored["classification"], stored["confidence"]) == ("Drusen", confidence)
    assert stored["findings"] == ["small drusen"]


def test_an_older_analysis_sent_back_with_a_confidence_of_1_is_not_refused(
    client: TestClient, sqlite_services: Application
) -> None:
    """A client sending back the whole patient it read, whose analysis a newer one has
    since followed, is not refused for the 1 the server stored."""
    pid = create(client)["id"]
    add_analysis_with_confidence(sqlite_services, pid)
    read = client.get(f"/api/patients/{pid}").json()
    add_analysis(sqlite_services, pid)

    response = client.patch(f"/api/patients/{pid}", json={**read, "history": "seen"})

    assert response.status_code == 200, response.text
    assert response.json()["history"] == "seen"


@pytest.mark.parametrize(
    "change",
    [
        {"analysis_id": None},
        {"classification": "Drusen (small)"},
        {"findings": ["large drusen"]},
        {"confidence": True},
    ],
    ids=["no-analysis-id", "classification", "findings", "boolean"],
)
def test_a_changed_result_with_a_confidence_of_1_is_still_refused(
    client: TestClient, sqlite_services: Application, change: dict[str, Any]
) -> None:
    """Only the stored result unchanged is read as stored: a new result giving 1 is
    ambiguous (1% or 100%), a 422 that says so."""
    patient = create(client)
    analysis_id = add_analysis_with_confidence(sqlite_services, None)
    result = {**client.get(f"/api/analyses/{analysis_id}").json(), **change}

    response = client.patch(f"/api/patients/{patient['id']}", json={"aiAnalysis": result})

    assert response.status_code == 422, response.text
    assert response.json()["field"] == "aiAnalysis"
    assert "ambiguous" in response.json()["detail"] or "not a number" in response.json()["detail"]
