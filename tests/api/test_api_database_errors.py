"""Database errors that are not an outage: a pool whose connections all stayed busy is
a 503 worth retrying (Retry-After), a statement the database refuses is a 500 that says
so (retrying cannot help), neither quoting the error's text."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ophthai_desktop.api.errors import DATABASE_RETRY_AFTER_S
from ophthai_desktop.bootstrap import Application


def test_a_request_that_waited_too_long_for_a_connection_is_a_503_with_retry_after(
    client: TestClient, sqlite_services: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    def busy(*_args: object, **_kwargs: object) -> None:
        raise PoolTimeout("QueuePool limit of size 8 overflow 16 reached")

    monkeypatch.setattr(sqlite_services.patients, "list_patients", busy)
    response = client.get("/api/patients")
    assert response.status_code == 503
    assert response.headers["retry-after"] == str(DATABASE_RETRY_AFTER_S)
    assert "try again" in response.json()["message"]


def test_a_statement_the_database_refuses_is_a_500_without_retry_after(
    client: TestClient, sqlite_services: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*_args: object, **_kwargs: object) -> None:
        raise ProgrammingError("SELECT name FROM patients WHERE name = ?", ("Ada Secret",), None)

    monkeypatch.setattr(sqlite_services.patients, "list_patients", refused)
    response = client.get("/api/patients")
    assert response.status_code == 500
    assert "retry-after" not in response.headers
    assert response.json()["message"] == (
        "the database refused the request; see the application log"
    )
    assert "Secret" not in response.text
