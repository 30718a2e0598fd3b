"""The audit trail as an API client sees it: who (client address), from where, what."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.storage.models import Analysis

SECRET_NAME = "Zebediah Quartermaine"


def test_api_changes_are_audited_with_the_client_address_and_no_names(
    client: TestClient, sqlite_services: Application
) -> None:
    pid = client.post("/api/patients", json={"name": SECRET_NAME, "age": 70}).json()["id"]
    client.patch(f"/api/patients/{pid}", json={"name": SECRET_NAME + " Jr", "age": 71})
    with sqlite_services.db.session() as session:
        session.add(Analysis(patient_id=pid, model_id="m", parse_status="parsed", result={}))
    assert client.post(f"/api/patients/{pid}/validate?approved=true").status_code == 200
    assert client.post(
        f"/api/patients/{pid}/schedule", json={"appointmentDate": "2031-02-03T04:05:06Z"}
    ).is_success
    assert client.delete(f"/api/patients/{pid}").status_code == 200

    response = client.get("/api/audit/", params={"entity_type": "patient", "entity_id": pid})

    assert response.status_code == 200
    events = response.json()
    assert [e["action"] for e in events] == ["delete", "schedule", "validate", "update", "create"]
    assert response.headers["X-Total-Count"] == "5"
    for event in events:
        assert event["actor"] == "testclient"
        assert event["origin"] == "api"
        assert event["entityId"] == pid
        assert event["at"].endswith(("Z", "+00:00"))
    assert set(events[3]["details"]["fields"]) == {"name", "age"}
    everything = client.get("/api/audit", params={"limit": 500}).text
    assert "Zebediah" not in everything and "Quartermaine" not in everything


def test_notification_changes_are_audited(client: TestClient) -> None:
    nid = client.post("/api/notifications", json={"message": "hello"}).json()["id"]
    client.patch(f"/api/notifications/{nid}/read")
    client.delete(f"/api/notifications/{nid}")

    events = client.get("/api/audit", params={"entity_type": "notification"}).json()

    assert [(e["action"], e["entityId"]) for e in events] == [
        ("delete", str(nid)),
        ("update", str(nid)),
        ("create", str(nid)),
    ]
    assert {e["origin"] for e in events} == {"api"}


def test_a_patch_that_changes_nothing_leaves_no_trace(client: TestClient) -> None:
    """A client sending back what it read (or an empty body) changed nothing: no audit
    entry, the same updatedAt and ETag (so its If-Match still holds), the same body."""
    created = client.post(
        "/api/patients",
        json={"name": "Ada", "birthDate": "1960-05-01", "gender": "Female", "symptoms": "floaters"},
    ).json()
    pid = created["id"]
    read = client.get(f"/api/patients/{pid}")
    echoed = {key: read.json()[key] for key in ("name", "age", "birthDate", "gender", "symptoms")}

    for body in (echoed, {}, {"status": read.json()["status"]}):
        patched = client.patch(
            f"/api/patients/{pid}", json=body, headers={"If-Match": read.headers["etag"]}
        )
        assert patched.status_code == 200, patched.text
        assert patched.headers["etag"] == read.headers["etag"]
        assert patched.json() == read.json()

    trail = client.get("/api/audit", params={"entity_type": "patient", "entity_id": pid})
    assert [e["action"] for e in trail.json()] == ["create"]


def test_marking_all_read_with_nothing_unread_is_not_audited(client: TestClient) -> None:
    nid = client.post("/api/notifications", json={"message": "hello"}).json()["id"]
    client.patch("/api/notifications/mark-all-read")
    client.patch("/api/notifications/mark-all-read")  # nothing left unread
    client.patch(f"/api/notifications/{nid}/read")  # already read

    events = client.get("/api/audit", params={"entity_type": "notification"}).json()

    assert [(e["action"], e["entityId"], e["details"]) for e in events] == [
        ("update", "*", {"read": 1}),
        ("create", str(nid), {}),
    ]
