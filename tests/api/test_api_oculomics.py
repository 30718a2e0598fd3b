"""Oculomics over REST: per-eye series, trends, reference flags and the seed summary."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

TODAY = date.today()
TWO_YEARS_AGO = TODAY - timedelta(days=730)
ONE_YEAR_AGO = TODAY - timedelta(days=365)


@pytest.fixture
def patient_id(client: TestClient) -> str:
    response = client.post("/api/patients", json={"name": "Ada Lovelace"})
    assert response.status_code == 201
    pid: str = response.json()["id"]
    return pid


def measure(client: TestClient, pid: str, slash: str = "", **body: Any) -> dict[str, Any]:
    response = client.post(f"/api/patients/{pid}/oculomics{slash}", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
def series(client: TestClient, patient_id: str) -> str:
    """Two eyes on three dates: OD's pressure and cupping rise, OS stays normal."""
    for day, iop, cdr in ((TWO_YEARS_AGO, 16, 0.3), (ONE_YEAR_AGO, 19, 0.4), (TODAY, 24, 0.6)):
        measure(
            client,
            patient_id,
            eye="OD",
            measured_on=day.isoformat(),
            iop_mmhg=iop,
            cup_to_disc_ratio=cdr,
            rnfl_thickness_um=95,
            vessel_density_pct=50,
        )
    for day, iop in ((TWO_YEARS_AGO, 15), (ONE_YEAR_AGO, 15), (TODAY, 15)):
        measure(
            client,
            patient_id,
            slash="/",
            eye="os",
            date=day.isoformat(),
            iop=iop,
            cupToDiscRatio=0.3,
            vesselDensity=38,
        )
    return patient_id


def test_measurements_come_back_per_eye(client: TestClient, series: str) -> None:
    overview = client.get(f"/api/patients/{series}/oculomics").json()

    od, os_ = overview["measurements"]["OD"], overview["measurements"]["OS"]
    assert [m["measuredOn"] for m in od] == [
        TWO_YEARS_AGO.isoformat(),
        ONE_YEAR_AGO.isoformat(),
        TODAY.isoformat(),
    ]
    assert [m["iopMmhg"] for m in od] == [16, 19, 24]
    assert all(m["eye"] == "OS" for m in os_) and len(os_) == 3


def test_trends_give_the_change_per_year(client: TestClient, series: str) -> None:
    trends = client.get(f"/api/patients/{series}/oculomics/").json()["trends"]
    by_key = {(t["eye"], t["metric"]): t for t in trends}

    od_iop = by_key[("OD", "iop_mmhg")]
    assert od_iop["points"] == 3
    assert od_iop["changePerYear"] == pytest.approx(4.0, abs=0.05)
    assert by_key[("OS", "iop_mmhg")]["changePerYear"] == pytest.approx(0.0, abs=1e-9)
    assert by_key[("OD", "cup_to_disc_ratio")]["changePerYear"] == pytest.approx(0.15, abs=0.01)
    assert ("OS", "rnfl_thickness_um") not in by_key  # never measured


def test_values_beyond_the_reference_thresholds_are_flagged(
    client: TestClient, patient_id: str
) -> None:
    high = measure(
        client, patient_id, eye="OD", date=TODAY.isoformat(), iop=22, cupToDiscRatio=0.55
    )
    edge = measure(client, patient_id, eye="OS", date=TODAY.isoformat(), iop=21, cupToDiscRatio=0.5)

    assert set(high["flags"]) == {"iop_mmhg_high", "cup_to_disc_ratio_high"}
    assert edge["flags"] == []
    trends = client.get(f"/api/patients/{patient_id}/oculomics").json()["trends"]
    flags = {(t["eye"], t["metric"]): t["latestFlag"] for t in trends}
    assert flags[("OD", "iop_mmhg")] == "iop_mmhg_high"
    assert flags[("OS", "iop_mmhg")] is None


def test_the_patient_carries_the_seed_shaped_summary(client: TestClient, series: str) -> None:
    summary = client.get(f"/api/patients/{series}").json()["oculomics"]

    assert set(summary) == {
        "intraocularPressure",
        "cupToDiscRatio",
        "rnflThickness",
        "vesselDensity",
        "history",
    }
    # The worse eye on the latest date: OD's pressure and cupping, OS's thin vessels.
    assert summary["intraocularPressure"] == 24
    assert summary["cupToDiscRatio"] == pytest.approx(0.6)
    assert summary["vesselDensity"] == 38
    assert summary["history"] == [
        {"date": TWO_YEARS_AGO.isoformat(), "iop": 16, "density": 38},
        {"date": ONE_YEAR_AGO.isoformat(), "iop": 19, "density": 38},
        {"date": TODAY.isoformat(), "iop": 24, "density": 38},
    ]
    listed = client.get("/api/patients").json()[0]["oculomics"]
    assert listed == summary
    assert client.get(f"/api/patients/{series}/oculomics").json()["summary"] == summary


def test_a_patient_without_measurements_has_no_summary(client: TestClient, patient_id: str) -> None:
    overview = client.get(f"/api/patients/{patient_id}/oculomics").json()

    assert client.get(f"/api/patients/{patient_id}").json()["oculomics"] is None
    assert overview["summary"] is None
    assert overview["trends"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"eye": "OD", "date": TODAY.isoformat(), "iop": 200}, "iop"),
        ({"eye": "OD", "date": TODAY.isoformat(), "cupToDiscRatio": 1.7}, "cupToDiscRatio"),
        ({"eye": "OD", "date": (TODAY + timedelta(days=2)).isoformat(), "iop": 15}, "date"),
        ({"eye": "OU", "date": TODAY.isoformat(), "iop": 15}, "eye"),
    ],
    ids=["iop-200", "cdr-1.7", "future-date", "both-eyes"],
)
def test_implausible_measurements_are_refused_by_field(
    client: TestClient, patient_id: str, body: dict[str, Any], field: str
) -> None:
    response = client.post(f"/api/patients/{patient_id}/oculomics", json=body)

    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == [field]  # as the body named it
    overview = client.get(f"/api/patients/{patient_id}/oculomics").json()
    assert overview["measurements"] == {"OD": [], "OS": []}


def test_a_measurement_for_an_unknown_patient_is_404(client: TestClient) -> None:
    response = client.post(
        "/api/patients/nobody/oculomics", json={"eye": "OD", "date": TODAY.isoformat(), "iop": 15}
    )

    assert response.status_code == 404


@pytest.mark.parametrize(
    "keys",
    [
        ("intraocularPressure", "cupToDiscRatio", "rnflThickness", "vesselDensity"),
        ("intraocular_pressure", "cup_to_disc_ratio", "rnfl_thickness", "vessel_density"),
    ],
    ids=["seed-camel", "seed-snake"],
)
def test_the_seed_summary_names_are_taken_in_either_case(
    client: TestClient, patient_id: str, keys: tuple[str, str, str, str]
) -> None:
    values = (23.0, 0.55, 88.0, 41.0)
    stored = measure(
        client,
        patient_id,
        eye="OD",
        measured_on=TODAY.isoformat(),
        **dict(zip(keys, values, strict=True)),
    )
    assert (stored["iopMmhg"], stored["cupToDiscRatio"]) == (23.0, 0.55)
    assert (stored["rnflThicknessUm"], stored["vesselDensityPct"]) == (88.0, 41.0)


def test_a_measurement_without_values_is_a_422_located_in_the_body(
    client: TestClient, patient_id: str
) -> None:
    response = client.post(
        f"/api/patients/{patient_id}/oculomics", json={"eye": "OD", "date": TODAY.isoformat()}
    )

    assert response.status_code == 422
    body = response.json()
    assert "at least one measurement value" in body["message"]
    assert [e["loc"] for e in body["errors"]] == [["body"]]  # the body as a whole


def test_a_measurement_added_is_read_where_its_location_points(
    client: TestClient, patient_id: str
) -> None:
    """The 201 named no Location (and no GET read one measurement), unlike a patient's
    or a notification's: a client could not point at what it had just stored."""
    response = client.post(
        f"/api/patients/{patient_id}/oculomics",
        json={"eye": "OD", "measuredOn": TODAY.isoformat(), "iopMmhg": 31},
    )
    assert response.status_code == 201, response.text
    location = response.headers["Location"]
    assert location == f"/api/patients/{patient_id}/oculomics/{response.json()['id']}"

    read = client.get(location)

    assert read.status_code == 200
    assert read.json() == response.json()
    assert read.json()["flags"]  # 31 mmHg is above the reference range


def test_a_measurement_of_another_patient_or_none_is_404(
    client: TestClient, patient_id: str
) -> None:
    mid = measure(client, patient_id, eye="OS", date=TODAY.isoformat(), iop=15)["id"]
    other = client.post("/api/patients", json={"name": "Grace Hopper"}).json()["id"]

    assert client.get(f"/api/patients/{other}/oculomics/{mid}").status_code == 404
    assert client.get(f"/api/patients/{patient_id}/oculomics/{mid + 1}").status_code == 404
    assert client.get(f"/api/patients/nobody/oculomics/{mid}").status_code == 404
    assert client.get(f"/api/patients/{patient_id}/oculomics/x").status_code == 422
