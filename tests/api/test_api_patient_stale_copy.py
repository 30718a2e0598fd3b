"""A whole-patient PATCH from a client that read the patient before a newer analysis
arrived: the older ``aiAnalysis`` it sends back is a stale copy, never the patient's
newest result, and a verdict or status it carries is refused rather than put on an
analysis the client never saw."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.inference import ParsedAnswer
from tests.support.images import png_bytes
from tests.support.jobs import wait_for_outcome
from tests.support.scripted_engine import DME, NORMAL, ScriptedEngine


def _patient_with_image(client: TestClient) -> str:
    image = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    created = client.post("/api/patients", json={"name": "Stale Copy", "imageUrl": image})
    assert created.status_code == 201, created.text
    patient_id: str = created.json()["id"]
    return patient_id


def _analyse(
    client: TestClient,
    services: Application,
    engine: ScriptedEngine,
    patient_id: str,
    answer: ParsedAnswer | None,
) -> int:
    """The model's analysis of the patient's scan, giving ``answer`` (None: unparsed);
    its id."""
    engine.answer = answer
    job = client.post(f"/api/patients/{patient_id}/analyze")
    assert job.status_code == 202, job.text
    outcome = wait_for_outcome(services, job.json()["id"])
    assert outcome.analysis is not None
    return outcome.analysis.id


def _approve(client: TestClient, patient_id: str) -> dict[str, Any]:
    verdict = {"approved": True, "clinician": "Dr X"}
    response = client.post(f"/api/patients/{patient_id}/validate", json=verdict)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_stale_copy_with_a_verdict_does_not_hide_a_newer_abnormal_result(
    ai_client: TestClient, sqlite_services: Application, engine: ScriptedEngine
) -> None:
    """The frontend read the patient with "Normal" approved; the model then found DME.
    Its whole-patient PATCH of an unrelated change sends back the old analysis and
    "approved": a 409 naming aiAnalysis, and nothing of it is applied: DME stays the
    newest result, preliminary, the patient Critical at validation."""
    pid = _patient_with_image(ai_client)
    _analyse(ai_client, sqlite_services, engine, pid, NORMAL)
    read = _approve(ai_client, pid)
    assert (read["aiAnalysis"]["classification"], read["validationStatus"]) == (
        "Normal",
        "approved",
    )
    newer = _analyse(ai_client, sqlite_services, engine, pid, DME)

    response = ai_client.patch(f"/api/patients/{pid}", json={**read, "history": "new phone"})

    assert response.status_code == 409, response.text
    body = response.json()
    assert body["field"] == "aiAnalysis"
    assert "newer analysis" in body["detail"] and "read the patient again" in body["detail"]
    after = ai_client.get(f"/api/patients/{pid}").json()
    assert after["aiAnalysis"]["analysis_id"] == newer
    assert after["aiAnalysis"]["classification"] == "Diabetic Macular Edema"
    assert after["aiAnalysis"]["status"] == "preliminary"
    assert (after["validationStatus"], after["status"], after["workflowStep"]) == (
        None,
        "Critical",
        2,
    )
    assert after["history"] == read["history"]
    assert len(sqlite_services.patients.list_analyses(pid)) == 2


def test_a_verdict_beside_a_stale_copy_is_refused_not_put_on_the_newer_analysis(
    ai_client: TestClient, sqlite_services: Application, engine: ScriptedEngine
) -> None:
    """Only the analysis and the verdict sent: the verdict is not on the copy, nor on
    the newer analysis the client never saw."""
    pid = _patient_with_image(ai_client)
    _analyse(ai_client, sqlite_services, engine, pid, DME)
    read = ai_client.get(f"/api/patients/{pid}").json()
    newer = _analyse(ai_client, sqlite_services, engine, pid, DME)

    response = ai_client.patch(
        f"/api/patients/{pid}",
        json={"aiAnalysis": read["aiAnalysis"], "validationStatus": "rejected"},
    )

    assert response.status_code == 409, response.text
    assert response.json()["field"] == "aiAnalysis"
    after = ai_client.get(f"/api/patients/{pid}").json()
    assert after["aiAnalysis"]["analysis_id"] == newer
    assert (after["aiAnalysis"]["status"], after["validationStatus"]) == ("preliminary", None)


def test_a_stale_copy_that_would_change_the_status_is_refused(
    ai_client: TestClient, sqlite_services: Application, engine: ScriptedEngine
) -> None:
    """Read while "Normal" was preliminary (Stable); DME then made the patient Critical.
    The "Stable" sent back with the old copy would take the patient off the list of
    those to look at: refused as the verdict is."""
    pid = _patient_with_image(ai_client)
    _analyse(ai_client, sqlite_services, engine, pid, NORMAL)
    read = ai_client.get(f"/api/patients/{pid}").json()
    assert (read["status"], read["validationStatus"]) == ("Stable", None)
    _analyse(ai_client, sqlite_services, engine, pid, DME)

    response = ai_client.patch(f"/api/patients/{pid}", json={**read, "history": "x"})

    assert response.status_code == 409, response.text
    assert response.json()["field"] == "aiAnalysis"
    after = ai_client.get(f"/api/patients/{pid}").json()
    assert (after["status"], after["history"]) == ("Critical", read["history"])


@pytest.mark.parametrize("answers", [(DME, DME), (None, None)], ids=["parsed", "unparsed"])
def test_a_stale_copy_alone_is_ignored_and_the_other_fields_applied(
    ai_client: TestClient,
    sqlite_services: Application,
    engine: ScriptedEngine,
    answers: tuple[ParsedAnswer | None, ParsedAnswer | None],
) -> None:
    """Nothing the newer analysis decided would change (verdict, status, step): the
    change the client made is applied, the copy is not stored, and the response shows
    the newest analysis. An unparsed analysis sent back as read is such a copy too (it
    was a 422 for lacking a classification)."""
    pid = _patient_with_image(ai_client)
    _analyse(ai_client, sqlite_services, engine, pid, answers[0])
    read = ai_client.get(f"/api/patients/{pid}").json()
    newer = _analyse(ai_client, sqlite_services, engine, pid, answers[1])

    response = ai_client.patch(f"/api/patients/{pid}", json={**read, "history": "new phone"})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["history"] == "new phone"
    assert body["aiAnalysis"]["analysis_id"] == newer
    assert body["aiAnalysis"]["parse_status"] != "client_supplied"
    assert len(sqlite_services.patients.list_analyses(pid)) == 2


def test_a_stale_copy_with_if_match_is_still_a_412(
    ai_client: TestClient, sqlite_services: Application, engine: ScriptedEngine
) -> None:
    pid = _patient_with_image(ai_client)
    _analyse(ai_client, sqlite_services, engine, pid, NORMAL)
    read = ai_client.get(f"/api/patients/{pid}")
    _analyse(ai_client, sqlite_services, engine, pid, DME)

    response = ai_client.patch(
        f"/api/patients/{pid}",
        json={**read.json(), "validationStatus": "approved"},
        headers={"If-Match": read.headers["ETag"]},
    )

    assert response.status_code == 412, response.text


def test_an_older_analysis_edited_is_still_a_new_client_supplied_result(
    ai_client: TestClient, sqlite_services: Application, engine: ScriptedEngine
) -> None:
    pid = _patient_with_image(ai_client)
    _analyse(ai_client, sqlite_services, engine, pid, DME)
    read = ai_client.get(f"/api/patients/{pid}").json()
    _analyse(ai_client, sqlite_services, engine, pid, NORMAL)
    edited = {**read["aiAnalysis"], "classification": "Diabetic Macular Edema (mild)"}

    response = ai_client.patch(f"/api/patients/{pid}", json={"aiAnalysis": edited})

    assert response.status_code == 200, response.text
    stored = response.json()["aiAnalysis"]
    assert (stored["classification"], stored["parse_status"]) == (
        "Diabetic Macular Edema (mild)",
        "client_supplied",
    )
    assert len(sqlite_services.patients.list_analyses(pid)) == 3


def test_another_patients_analysis_attached_is_still_stored(
    ai_client: TestClient, sqlite_services: Application, engine: ScriptedEngine
) -> None:
    """An analysis of another patient is no stale copy of this one's: attaching it
    stores it as this patient's client-supplied result, with a verdict on it."""
    other = _patient_with_image(ai_client)
    _analyse(ai_client, sqlite_services, engine, other, DME)
    theirs = ai_client.get(f"/api/patients/{other}").json()["aiAnalysis"]
    pid = _patient_with_image(ai_client)
    _analyse(ai_client, sqlite_services, engine, pid, NORMAL)
    _analyse(ai_client, sqlite_services, engine, pid, NORMAL)

    response = ai_client.patch(
        f"/api/patients/{pid}", json={"aiAnalysis": theirs, "validationStatus": "approved"}
    )

    assert response.status_code == 200, response.text
    stored = response.json()["aiAnalysis"]
    assert stored["analysis_id"] != theirs["analysis_id"]
    assert (stored["classification"], stored["parse_status"], stored["status"]) == (
        "Diabetic Macular Edema",
        "client_supplied",
        "approved",
    )


def test_the_newest_analysis_edited_is_a_new_client_supplied_result(
    ai_client: TestClient, sqlite_services: Application, engine: ScriptedEngine
) -> None:
    """The newest analysis sent back with a value changed is an edit, stored as an
    older one edited is; it used to be dropped without a word (200, nothing stored)."""
    pid = _patient_with_image(ai_client)
    _analyse(ai_client, sqlite_services, engine, pid, DME)
    read = ai_client.get(f"/api/patients/{pid}").json()
    edited = {**read["aiAnalysis"], "findings": ["subretinal fluid", "hard exudates"]}

    response = ai_client.patch(f"/api/patients/{pid}", json={"aiAnalysis": edited})

    assert response.status_code == 200, response.text
    stored = response.json()["aiAnalysis"]
    assert stored["analysis_id"] != read["aiAnalysis"]["analysis_id"]
    assert (stored["findings"], stored["parse_status"]) == (
        ["subretinal fluid", "hard exudates"],
        "client_supplied",
    )
    assert len(sqlite_services.patients.list_analyses(pid)) == 2


@pytest.mark.parametrize("answer", [DME, None], ids=["parsed", "unparsed"])
def test_the_newest_analysis_sent_back_whole_or_in_part_is_no_change(
    ai_client: TestClient,
    sqlite_services: Application,
    engine: ScriptedEngine,
    answer: ParsedAnswer | None,
) -> None:
    """Sent back as read, or with some of its keys left out, the newest analysis is no
    new result: nothing stored, the verdict kept."""
    pid = _patient_with_image(ai_client)
    _analyse(ai_client, sqlite_services, engine, pid, answer)
    read = ai_client.get(f"/api/patients/{pid}").json()
    shown = read["aiAnalysis"]
    partial = {key: shown[key] for key in ("analysis_id", "classification", "confidence", "status")}

    for sent in (shown, partial):
        response = ai_client.patch(f"/api/patients/{pid}", json={"aiAnalysis": sent})
        assert response.status_code == 200, response.text
        assert response.json()["aiAnalysis"]["analysis_id"] == shown["analysis_id"]
    assert len(sqlite_services.patients.list_analyses(pid)) == 1


def test_an_older_analysis_sent_back_in_part_is_still_a_stale_copy(
    ai_client: TestClient, sqlite_services: Application, engine: ScriptedEngine
) -> None:
    """A client that sends back only some of an older analysis's keys sends no new
    result either: the older one is not put in front of the newer one."""
    pid = _patient_with_image(ai_client)
    _analyse(ai_client, sqlite_services, engine, pid, NORMAL)
    shown = ai_client.get(f"/api/patients/{pid}").json()["aiAnalysis"]
    newer = _analyse(ai_client, sqlite_services, engine, pid, DME)
    partial = {key: shown[key] for key in ("analysis_id", "classification", "confidence")}

    response = ai_client.patch(
        f"/api/patients/{pid}", json={"aiAnalysis": partial, "history": "moved house"}
    )

    assert response.status_code == 200, response.text
    assert response.json()["aiAnalysis"]["analysis_id"] == newer
    assert response.json()["history"] == "moved house"
    assert len(sqlite_services.patients.list_analyses(pid)) == 2
