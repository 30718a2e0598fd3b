"""The API while the database does not answer (a PostgreSQL restart, a locked SQLite
file): a 503 that says when to try again, and the model's health all the same."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ophthai_desktop.api.errors import DATABASE_RETRY_AFTER_S
from ophthai_desktop.bootstrap import Application
from tests.support.outage import database_down, database_full


def test_a_request_the_database_cannot_answer_is_a_503_with_retry_after(
    client: TestClient, sqlite_services: Application
) -> None:
    with database_down(sqlite_services.db):
        response = client.get("/api/patients")
        created = client.post("/api/patients", json={"name": "Ada Lovelace"})
    for refused in (response, created):
        assert refused.status_code == 503
        assert refused.json()["detail"] == "the database is unavailable; try again shortly"
        assert refused.headers["retry-after"] == str(DATABASE_RETRY_AFTER_S) == "5"
    assert client.get("/api/patients").status_code == 200  # back: no Retry-After
    assert "retry-after" not in client.get("/api/patients").headers


def test_the_models_health_is_answered_while_the_database_does_not(
    ai_client: TestClient, sqlite_services: Application
) -> None:
    before = ai_client.get("/api/ai/health").json()
    assert before["database"] == "available" and before["queue"]["queued"] == 0
    with database_down(sqlite_services.db):
        response = ai_client.get("/api/ai/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == before["status"] and health["state"] == before["state"]
    assert health["database"] == "unavailable"
    assert health["queue"] == {"queued": None, "running": None}


def test_a_change_the_database_s_full_disk_cannot_hold_is_a_507_without_retry_after(
    client: TestClient, sqlite_services: Application
) -> None:
    """SQLITE_FULL was read as an outage: a 503 with Retry-After, as if it would pass by
    itself, though a full disk stays full until someone frees space."""
    history = "h" * 5000  # more than a page: it needs pages the full disk cannot give
    with database_full(sqlite_services.db):
        answers = [
            client.post("/api/patients", json={"name": "Ada Lovelace", "history": history})
            for _ in range(50)
        ]
        refused = answers[-1]
        listed = client.get("/api/patients")
    assert refused.status_code == 507, refused.text
    assert refused.json()["message"] == "cannot write to the database: its disk is full"
    assert "retry-after" not in refused.headers
    assert listed.status_code == 200  # reads go on: no outage
    assert sqlite_services.db.availability.available
    created = client.post("/api/patients", json={"name": "Ada Lovelace", "history": history})
    assert created.status_code == 201  # room again
