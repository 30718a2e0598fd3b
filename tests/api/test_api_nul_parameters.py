"""A NUL in a path or query parameter is a 422 naming it on SQLite and PostgreSQL alike
(PostgreSQL cannot take one even to compare: it was a 500 there, an empty answer or a
404 on SQLite)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ophthai_desktop.api import create_app
from ophthai_desktop.bootstrap import Application
from tests.support.http import LoopbackClient


@pytest.fixture
def any_db_client(app_services: Application) -> Iterator[TestClient]:
    with LoopbackClient(create_app(app_services)) as client:
        yield client


@pytest.mark.parametrize(
    ("url", "loc"),
    [
        ("/api/patients?search=jo%00", ["query", "search"]),
        ("/api/jobs?patientId=pt-1%00", ["query", "patientId"]),
        ("/api/notifications?patient_id=pt-1%00", ["query", "patient_id"]),
        ("/api/audit?entity_id=pt-1%00", ["query", "entity_id"]),
        ("/api/audit?entity_type=patient%00", ["query", "entity_type"]),
        ("/api/patients/pt-1%00", ["path", "patient_id"]),
        ("/api/patients/pt-1%00/scans", ["path", "patient_id"]),
    ],
)
def test_a_nul_in_a_parameter_is_a_422_naming_it(
    any_db_client: TestClient, url: str, loc: list[str]
) -> None:
    response = any_db_client.get(url)

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert "control character" in response.json()["message"]
