"""Notifications over REST: the seed's endpoints, shape, filters and missing records."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.http import NOTIFICATION_KEYS

SLASHES = pytest.mark.parametrize("slash", ["", "/"], ids=["bare", "trailing-slash"])


def notify(client: TestClient, message: str = "scan ready", **fields: Any) -> dict[str, Any]:
    response = client.post("/api/notifications", json={"message": message, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def unread(client: TestClient) -> int:
    count: int = client.get("/api/notifications/unread-count").json()["count"]
    return count


@SLASHES
def test_create_and_list(client: TestClient, slash: str) -> None:
    created = client.post(
        f"/api/notifications{slash}", json={"message": "OCT uploaded", "type": "success"}
    )
    listed = client.get(f"/api/notifications{slash}")

    assert created.status_code == 201, created.text
    assert listed.status_code == 200
    assert listed.json() == [created.json()]
    assert listed.headers["X-Total-Count"] == "1"


@SLASHES
def test_a_created_notification_is_at_its_location(client: TestClient, slash: str) -> None:
    created = client.post(f"/api/notifications{slash}", json={"message": "OCT uploaded"})

    assert created.headers["Location"] == f"/api/notifications/{created.json()['id']}"
    assert client.get(created.headers["Location"]).json() == created.json()


def test_notifications_have_exactly_the_seed_keys_and_their_analysis(client: TestClient) -> None:
    pid = client.post("/api/patients", json={"name": "Ada"}).json()["id"]

    body = notify(client, "IOP high", type="critical", patientId=pid)

    assert set(body) == NOTIFICATION_KEYS
    assert body["patientId"] == pid
    assert body["analysisId"] is None  # a client's: no analysis raised it
    assert (body["message"], body["type"], body["read"]) == ("IOP high", "critical", False)
    assert body["timestamp"].endswith(("Z", "+00:00"))


@pytest.mark.parametrize("key", ["patient_id", "patientId"])
def test_snake_and_camel_case_patient_keys(client: TestClient, key: str) -> None:
    pid = client.post("/api/patients", json={"name": "Ada"}).json()["id"]

    body = notify(client, **{key: pid})

    assert body["patientId"] == pid


def test_a_notification_for_an_unknown_patient_is_404_and_not_stored(client: TestClient) -> None:
    notify(client, "unrelated")

    response = client.post("/api/notifications", json={"message": "x", "patientId": "nobody"})

    assert response.status_code == 404
    assert "nobody" in response.json()["detail"]
    assert client.get("/api/notifications").headers["X-Total-Count"] == "1"
    assert unread(client) == 1


@pytest.mark.parametrize("key", ["patientId", "patient_id"])
def test_a_notification_for_an_empty_patient_id_is_a_422_naming_it(
    client: TestClient, key: str
) -> None:
    response = client.post("/api/notifications", json={"message": "x", key: ""})

    assert response.status_code == 422
    assert response.json()["message"] == (
        f"{key}: must not be empty: send a patient's id, or leave the field out"
    )
    assert [e["field"] for e in response.json()["errors"]] == [key]
    assert client.get("/api/notifications").json() == []


@pytest.mark.parametrize(
    "body",
    [{"message": ""}, {"message": "x", "type": "urgent"}, {}],
    ids=["empty-message", "bad-type", "no-message"],
)
def test_invalid_notifications_are_refused(client: TestClient, body: dict[str, Any]) -> None:
    response = client.post("/api/notifications", json=body)

    assert response.status_code == 422
    assert client.get("/api/notifications").json() == []


@SLASHES
def test_unread_count_and_mark_read(client: TestClient, slash: str) -> None:
    first, second = notify(client, "one"), notify(client, "two")

    assert client.get(f"/api/notifications/unread-count{slash}").json() == {"count": 2}
    marked = client.patch(f"/api/notifications/{first['id']}/read{slash}")

    assert marked.status_code == 200
    assert marked.json() == first | {"read": True}
    assert unread(client) == 1
    unread_only = client.get("/api/notifications", params={"unread_only": True}).json()
    assert [n["id"] for n in unread_only] == [second["id"]]


@SLASHES
def test_mark_all_read(client: TestClient, slash: str) -> None:
    for message in ("one", "two", "three"):
        notify(client, message)
    client.patch(f"/api/notifications/{notify(client, 'four')['id']}/read")

    response = client.patch(f"/api/notifications/mark-all-read{slash}")

    assert response.status_code == 200
    assert response.json()["count"] == 3
    assert unread(client) == 0
    assert all(n["read"] for n in client.get("/api/notifications").json())


@SLASHES
def test_delete(client: TestClient, slash: str) -> None:
    keep, doomed = notify(client, "keep"), notify(client, "doomed")

    response = client.delete(f"/api/notifications/{doomed['id']}{slash}")

    assert response.status_code == 200
    # What was deleted, with no count that says nothing (one record, by its id).
    assert response.json() == {"message": f"notification {doomed['id']} deleted"}
    assert client.get("/api/notifications").json() == [keep]
    assert client.delete(f"/api/notifications/{doomed['id']}").status_code == 404


def test_newest_first_with_paging_and_patient_filter(client: TestClient) -> None:
    pid = client.post("/api/patients", json={"name": "Ada"}).json()["id"]
    ids = [notify(client, f"n{i}", patientId=pid if i % 2 else None)["id"] for i in range(5)]

    page = client.get("/api/notifications", params={"limit": 2, "skip": 1})
    mine = client.get("/api/notifications", params={"patient_id": pid})

    assert [n["id"] for n in page.json()] == [ids[3], ids[2]]
    assert page.headers["X-Total-Count"] == "5"
    assert [n["id"] for n in mine.json()] == [ids[3], ids[1]]
    assert mine.headers["X-Total-Count"] == "2"


@pytest.mark.parametrize("path", ["/api/notifications", "/api/jobs"])
@pytest.mark.parametrize("name", ["patient_id", "patientId"])
def test_an_empty_patient_filter_is_a_422_not_an_empty_list(
    client: TestClient, path: str, name: str
) -> None:
    """No patient has an empty id: ``?patient_id=`` (a form's "any patient" left
    empty) matched nothing and answered an empty list as if there were none."""
    notify(client, "for everyone")
    response = client.get(path, params={name: ""})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == name


def test_a_non_numeric_id_is_a_422_naming_it(client: TestClient) -> None:
    response = client.patch("/api/notifications/abc/read")

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["detail"]] == ["notification_id"]
    assert response.json()["message"].startswith("notification_id: ")


def test_read_false_marks_unread_and_rereading_announces_nothing(client: TestClient) -> None:
    """A body the seed never sent is honoured, not ignored; and marking a read
    notification read again changes nothing, so no frame goes out for it."""
    created = notify(client)
    url = f"/api/notifications/{created['id']}/read"
    with client.websocket_connect("/api/notifications/ws") as socket:
        assert socket.receive_json()["event"] == "connected"
        assert client.patch(url).json()["read"] is True
        assert socket.receive_json()["event"] == "notification_updated"
        assert client.patch(url).json()["read"] is True  # again: no frame
        assert client.patch(url, json={"read": False}).json()["read"] is False
        frame = socket.receive_json()  # the next frame is the unread one
        assert (frame["event"], frame["data"]["read"]) == ("notification_updated", False)
    assert unread(client) == 1
    assert client.patch(url, json={"read": "maybe"}).status_code == 422


def test_mark_all_read_takes_no_body_and_says_so(client: TestClient) -> None:
    client.post("/api/notifications", json={"message": "one"})

    refused = client.patch("/api/notifications/mark-all-read", json={"read": False})
    still_unread = client.get("/api/notifications/unread-count").json()["count"]
    empty = client.patch("/api/notifications/mark-all-read", json={})
    none = client.patch("/api/notifications/mark-all-read")

    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["read"]
    assert still_unread == 1  # refused, so nothing was marked
    assert empty.status_code == 200 and empty.json()["count"] == 1
    assert none.status_code == 200 and none.json()["count"] == 0
