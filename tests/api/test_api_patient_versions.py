"""Patients' ETag and If-Match: a client that sends back the version it read cannot
silently overwrite another client's change (412 instead); clients that send no
If-Match are served as before."""

from __future__ import annotations

import base64
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ophthai_desktop.api import create_app
from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from tests.api.test_api_patients import add_analysis, create
from tests.conftest import png_bytes
from tests.support.http import LoopbackClient
from tests.support.scripted_engine import NORMAL, ScriptedEngine

STALE = '"stale"'


def read(client: TestClient, pid: str) -> tuple[dict[str, Any], str]:
    response = client.get(f"/api/patients/{pid}")
    assert response.status_code == 200, response.text
    return response.json(), response.headers["ETag"]


def test_a_patient_carries_a_strong_etag_that_changes_with_it(client: TestClient) -> None:
    pid = create(client)["id"]
    _, before = read(client, pid)
    _, unchanged = read(client, pid)

    patched = client.patch(f"/api/patients/{pid}", json={"age": 41})
    _, after = read(client, pid)

    assert before.startswith('"') and not before.startswith("W/")
    assert unchanged == before  # stable while the patient is
    assert after != before
    assert patched.headers["ETag"] == after  # the PATCH answers with the new version


def test_the_second_of_two_clients_gets_412_not_a_silent_overwrite(client: TestClient) -> None:
    pid = create(client)["id"]
    _, etag = read(client, pid)  # both clients read the same version

    first = client.patch(f"/api/patients/{pid}", json={"age": 41}, headers={"If-Match": etag})
    second = client.patch(f"/api/patients/{pid}", json={"age": 52}, headers={"If-Match": etag})

    assert first.status_code == 200, first.text
    assert second.status_code == 412
    assert second.json()["message"] == second.json()["detail"]
    assert "read it again" in second.json()["message"]
    assert read(client, pid)[0]["age"] == 41


@pytest.mark.parametrize(
    ("if_match", "status"),
    [("*", 200), ('"other", {current}', 200), ("W/{current}", 412), (STALE, 412)],
    ids=["star", "in-a-list", "weak-never-matches", "stale"],
)
def test_if_match_follows_the_http_rules(client: TestClient, if_match: str, status: int) -> None:
    pid = create(client)["id"]
    _, etag = read(client, pid)

    response = client.patch(
        f"/api/patients/{pid}",
        json={"history": "changed"},
        headers={"If-Match": if_match.format(current=etag)},
    )

    assert response.status_code == status, response.text


@pytest.mark.parametrize(
    ("lines", "status"),
    [
        ([STALE, "{current}"], 200),
        (["{current}", STALE], 200),
        ([STALE, "*"], 200),
        ([STALE, '"other"'], 412),
    ],
    ids=["current-on-the-second-line", "current-on-the-first", "star-on-a-line", "none-current"],
)
@pytest.mark.parametrize("change", ["patch", "schedule", "delete"])
def test_if_match_sent_on_several_lines_is_one_list(
    client: TestClient, lines: list[str], status: int, change: str
) -> None:
    """RFC 9110 §5.3: a field sent on several lines is one comma-separated list; any
    tag in it may match, not only the first line's."""
    pid = create(client)["id"]
    _, etag = read(client, pid)
    headers = [("If-Match", line.format(current=etag)) for line in lines]

    if change == "patch":
        response = client.patch(f"/api/patients/{pid}", json={"age": 41}, headers=headers)
    elif change == "schedule":
        response = client.post(
            f"/api/patients/{pid}/schedule",
            json={"appointmentDate": "2099-01-01T09:00:00Z"},
            headers=headers,
        )
    else:
        response = client.delete(f"/api/patients/{pid}", headers=headers)

    assert response.status_code == status, response.text
    assert (client.get(f"/api/patients/{pid}").status_code == 404) == (
        change == "delete" and status == 200
    )


@pytest.mark.parametrize(
    "if_none_match",
    ["{current}", "W/{current}", '"other", {current}', "*"],
    ids=["current", "weak-compares-equal", "in-a-list", "star"],
)
def test_a_read_naming_the_current_etag_in_if_none_match_is_304(
    client: TestClient, if_none_match: str
) -> None:
    pid = create(client)["id"]
    _, etag = read(client, pid)

    response = client.get(
        f"/api/patients/{pid}", headers={"If-None-Match": if_none_match.format(current=etag)}
    )

    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["ETag"] == etag


def test_a_read_with_an_older_etag_gets_the_patient_and_its_new_etag(client: TestClient) -> None:
    pid = create(client)["id"]
    _, old = read(client, pid)
    client.patch(f"/api/patients/{pid}", json={"age": 41})

    stale = client.get(f"/api/patients/{pid}", headers={"If-None-Match": old})
    on_two_lines = client.get(
        f"/api/patients/{pid}",
        headers=[("If-None-Match", old), ("If-None-Match", stale.headers["ETag"])],
    )
    missing = client.get("/api/patients/ghost", headers={"If-None-Match": "*"})

    assert stale.status_code == 200 and stale.json()["age"] == 41
    assert stale.headers["ETag"] != old
    assert on_two_lines.status_code == 304  # the current tag on the second line
    assert missing.status_code == 404


def test_requests_without_if_match_are_served_as_before(client: TestClient) -> None:
    pid = create(client)["id"]

    assert client.patch(f"/api/patients/{pid}", json={"age": 41}).status_code == 200
    assert client.patch(f"/api/patients/{pid}", json={"age": 52}).status_code == 200
    assert read(client, pid)[0]["age"] == 52


def test_a_stale_delete_is_refused_and_a_current_one_served(client: TestClient) -> None:
    pid = create(client)["id"]
    _, etag = read(client, pid)

    stale = client.delete(f"/api/patients/{pid}", headers={"If-Match": STALE})
    current = client.delete(f"/api/patients/{pid}", headers={"If-Match": etag})

    assert stale.status_code == 412
    assert current.status_code == 200
    assert client.get(f"/api/patients/{pid}").status_code == 404


def test_if_match_on_an_unknown_patient_is_404(client: TestClient) -> None:
    response = client.patch("/api/patients/ghost", json={"age": 3}, headers={"If-Match": "*"})

    assert response.status_code == 404


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("validate", {"json": {"approved": True}}),
        ("schedule", {"json": {"appointmentDate": "2099-01-01T09:00:00Z"}}),
        ("analyze", {}),
        ("scans", {"files": {"file": ("b.png", png_bytes((24, 24)), "image/png")}}),
        ("oculomics", {"json": {"eye": "OD", "date": "2024-01-01", "iop": 15}}),
    ],
)
def test_a_stale_state_changing_post_is_refused_and_changes_nothing(
    client: TestClient, sqlite_services: Application, path: str, kwargs: dict[str, Any]
) -> None:
    image = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    pid = create(client, imageUrl=image)["id"]
    add_analysis(sqlite_services, pid)
    before, etag = read(client, pid)

    stale = client.post(f"/api/patients/{pid}/{path}", headers={"If-Match": STALE}, **kwargs)

    assert stale.status_code == 412, stale.text
    assert read(client, pid) == (before, etag)
    assert sqlite_services.jobs.list_jobs().total == 0
    if path != "analyze":  # the model is not installed here (503 once the check passes)
        current = client.post(f"/api/patients/{pid}/{path}", headers={"If-Match": etag}, **kwargs)
        assert current.status_code in (200, 201), current.text
        if path in ("validate", "schedule"):
            assert current.headers["ETag"] == read(client, pid)[1]


def test_two_racing_changes_of_one_version_cannot_both_pass_the_check(
    client: TestClient, sqlite_services: Application, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = create(client)["id"]
    _, etag = read(client, pid)
    update = sqlite_services.patients.update_patient

    def slow_update(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.2)  # both requests are in flight: each has read the old version
        return update(*args, **kwargs)

    monkeypatch.setattr(sqlite_services.patients, "update_patient", slow_update)
    statuses: list[int] = []

    def patch(age: int) -> None:
        response = client.patch(
            f"/api/patients/{pid}", json={"age": age}, headers={"If-Match": etag}
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=patch, args=(age,)) for age in (41, 52)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200, 412]


def test_a_result_stored_after_the_if_match_check_is_not_validated_unread(
    app_services: Application, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker stores a new analysis just after the request's If-Match check and
    before its change: the inference worker does not take the API's lock. Before, the
    verdict was recorded on that new analysis, which the client had never read; now
    the check is made again under the lock the change takes, and it is a 412."""
    app = app_services
    result = ScriptedEngine(NORMAL)._result(cancelled=False)
    pid = app.patients.create_patient({"name": "V"}, actor=actor, image=NewImage(png_bytes())).id
    app.jobs.queue_patient_analysis(pid, actor=actor)
    first = app.jobs.claim_next()
    assert first is not None
    app.jobs.complete(first, result)
    app.jobs.queue_patient_analysis(pid, actor=actor, question="again")
    second = app.jobs.claim_next()
    assert second is not None
    checked = app.patients.get_patient

    def check_then_finish(patient_id: str) -> Any:
        record = checked(patient_id)
        monkeypatch.setattr(app.patients, "get_patient", checked)
        app.jobs.complete(second, result)  # the worker, right after the check
        return record

    with LoopbackClient(create_app(app)) as client:
        etag = client.get(f"/api/patients/{pid}").headers["ETag"]
        monkeypatch.setattr(app.patients, "get_patient", check_then_finish)
        r = client.post(f"/api/patients/{pid}/validate?approved=true", headers={"If-Match": etag})
        assert r.status_code == 412, r.text
        patient = client.get(f"/api/patients/{pid}").json()
    assert patient["validationStatus"] is None and patient["workflowStep"] == 2
    assert app.patients.list_analyses(pid)[0].status == "preliminary"
