"""Database errors that are not an outage: a pool whose connections all stayed busy is
a 503 worth retrying (Retry-After), a statement the database refuses is a 500 that says
so (retrying cannot help), neither quoting the error's text."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from ophthai_desktop.api import create_app
from ophthai_desktop.api.errors import DATABASE_RETRY_AFTER_S
from ophthai_desktop.bootstrap import Application
from tests.support.http import LoopbackClient


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


#: How long the test's other connection holds its lock: far past the shortened wait.
HELD_S = 10.0


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_lock_held_past_the_wait_is_a_503_with_retry_after_not_a_hang(
    app_services: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another connection holding a lock the request needs (a DBA's maintenance, a
    session left open in a transaction): SQLite gives up waiting for its file's lock
    after 30 s and the request is a 503; PostgreSQL waited as long as the lock was
    held, however long, the request (and every API thread that came after it) with it.
    It gives up after the same wait (here shortened), the same 503, no outage declared:
    the database answers."""
    from sqlalchemy import text

    from ophthai_desktop.core.storage import database

    app = app_services
    monkeypatch.setattr(database, "POSTGRES_LOCK_TIMEOUT_MS", 300, raising=False)
    app.db.dispose()  # pooled connections are made again, with the shortened wait
    holder = app.db.engine.connect()
    holder.execute(text("LOCK TABLE patients IN ACCESS EXCLUSIVE MODE"))
    answered = threading.Event()

    def hold_then_release() -> None:
        answered.wait(HELD_S)
        holder.rollback()

    releaser = threading.Thread(target=hold_then_release)
    releaser.start()
    try:
        with LoopbackClient(create_app(app)) as client:
            started = time.monotonic()
            response = client.get("/api/patients")
            waited_s = time.monotonic() - started
    finally:
        answered.set()
        releaser.join()
        holder.close()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(DATABASE_RETRY_AFTER_S)
    assert response.json()["message"] == (
        "the database is busy: another connection held a lock this needs for too long; "
        "try again shortly"
    )
    assert waited_s < HELD_S
    assert app.db.availability.available
