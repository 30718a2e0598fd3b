"""OculomicsService: per-eye series, trends, flags and the seed-shaped summary."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.errors import InvalidInput, NotFound
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.oculomics import REFERENCE_RANGES
from tests.support.races import after_commit, meanwhile


@pytest.fixture
def patient_id(app_services: Application, actor: Actor) -> str:
    return app_services.patients.create_patient({"name": "O"}, actor=actor).id


def test_series_trends_flags_and_summary(
    app_services: Application, actor: Actor, patient_id: str
) -> None:
    service = app_services.oculomics
    add = service.add_measurement
    add(
        patient_id,
        eye="OD",
        measured_on=date(2024, 1, 1),
        iop_mmhg=16,
        cup_to_disc_ratio=0.4,
        actor=actor,
    )
    add(
        patient_id,
        eye="OD",
        measured_on=date(2025, 1, 1),
        iop_mmhg=20,
        cup_to_disc_ratio=0.5,
        actor=actor,
    )
    add(
        patient_id,
        eye="OD",
        measured_on=date(2026, 1, 1),
        iop_mmhg=24,
        cup_to_disc_ratio=0.6,
        actor=actor,
    )
    add(
        patient_id,
        eye="os",
        measured_on=date(2026, 1, 1),
        iop_mmhg=14,
        vessel_density_pct=38,
        actor=actor,
    )
    add(
        patient_id,
        eye="OS",
        measured_on=date(2024, 1, 1),
        iop_mmhg=15,
        vessel_density_pct=46,
        actor=actor,
    )

    series = service.series(patient_id)
    assert [r.measured_on.year for r in series["OD"]] == [2024, 2025, 2026]
    assert [r.measured_on.year for r in series["OS"]] == [2024, 2026]
    assert series["OD"][-1].flags == ("iop_mmhg_high", "cup_to_disc_ratio_high")
    assert series["OD"][1].flags == ()  # 21 mmHg and 0.5 are still in range
    assert series["OS"][-1].flags == ("vessel_density_pct_low",)

    trends = {(t.eye, t.metric): t for t in service.trends(patient_id)}
    iop_od = trends[("OD", "iop_mmhg")]
    assert iop_od.points == 3
    assert iop_od.change_per_year == pytest.approx(4.0, abs=0.02)
    assert iop_od.latest_flag == "iop_mmhg_high"
    assert trends[("OS", "vessel_density_pct")].change_per_year == pytest.approx(-4.0, abs=0.02)
    assert ("OS", "cup_to_disc_ratio") not in trends

    summary = app_services.patients.get_patient(patient_id).oculomics
    assert summary is not None
    assert summary.intraocular_pressure == 24  # the worse eye on the newest date
    assert summary.cup_to_disc_ratio == 0.6
    assert summary.vessel_density == 38
    assert summary.rnfl_thickness is None
    assert [h["date"] for h in summary.history] == ["2024-01-01", "2025-01-01", "2026-01-01"]
    assert summary.history[0] == {"date": "2024-01-01", "iop": 16, "density": 46}


def test_single_point_has_no_trend(
    app_services: Application, actor: Actor, patient_id: str
) -> None:
    app_services.oculomics.add_measurement(
        patient_id, eye="OD", measured_on=date(2026, 1, 1), rnfl_thickness_um=70, actor=actor
    )
    (trend,) = app_services.oculomics.trends(patient_id)
    assert trend.change_per_year is None
    assert trend.latest_flag == "rnfl_thickness_um_low"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"eye": "OU", "iop_mmhg": 10}, "eye"),
        ({"eye": "OD", "iop_mmhg": 200}, "iop_mmhg"),
        ({"eye": "OD", "cup_to_disc_ratio": 1.5}, "cup_to_disc_ratio"),
        ({"eye": "OD"}, None),
        (
            {"eye": "OD", "iop_mmhg": 10, "measured_on": date.today() + timedelta(days=3)},
            "measured_on",
        ),
    ],
)
def test_invalid_measurements(
    app_services: Application,
    actor: Actor,
    patient_id: str,
    kwargs: dict[str, object],
    field: str | None,
) -> None:
    kwargs.setdefault("measured_on", date(2026, 1, 1))
    with pytest.raises(InvalidInput) as caught:
        app_services.oculomics.add_measurement(patient_id, actor=actor, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert app_services.oculomics.list_measurements(patient_id) == ()


def test_unknown_patient(app_services: Application, actor: Actor) -> None:
    with pytest.raises(NotFound):
        app_services.oculomics.add_measurement(
            "ghost", eye="OD", measured_on=date(2026, 1, 1), iop_mmhg=10, actor=actor
        )


def test_reference_table_holds_the_clinical_thresholds() -> None:
    assert REFERENCE_RANGES["iop_mmhg"].flag(21.0) is None
    assert REFERENCE_RANGES["iop_mmhg"].flag(21.5) == "iop_mmhg_high"
    assert REFERENCE_RANGES["cup_to_disc_ratio"].flag(0.51) == "cup_to_disc_ratio_high"


def test_measurements_added_at_once_are_both_in_the_summary(
    app_services: Application, actor: Actor, patient_id: str
) -> None:
    """The patient's ``oculomics`` (stored with the patient) is computed from the
    measurements a transaction reads. Before, on PostgreSQL, a measurement committed
    between that read and the commit was left out of it for good."""
    service = app_services.oculomics
    today = date.today()

    def other_eye() -> None:
        service.add_measurement(patient_id, eye="OS", measured_on=today, iop_mmhg=30, actor=actor)

    with meanwhile(app_services, "FROM oculomics_measurements", other_eye):
        service.add_measurement(patient_id, eye="OD", measured_on=today, iop_mmhg=15, actor=actor)
    assert len(service.list_measurements(patient_id)) == 2
    summary = app_services.patients.get_patient(patient_id).oculomics
    assert summary is not None and summary.intraocular_pressure == 30  # the worse eye


def test_a_measurement_announced_after_its_patients_deletion_brings_nothing_back(
    app_services: Application, actor: Actor, patient_id: str
) -> None:
    """The measurement commits, then the patient is deleted and announced gone, and
    only then is the measurement announced. Before, patient_updated went out after
    patient_deleted (on the WebSocket and to the window), and a client that keeps what
    it is told showed the deleted patient again."""
    app = app_services
    seen: list[ev.Event] = []
    app.bus.subscribe(seen.append)
    with after_commit(lambda: app.patients.delete_patient(patient_id, actor=actor)):
        app.oculomics.add_measurement(
            patient_id, eye="OD", measured_on=date.today(), iop_mmhg=15, actor=actor
        )
    assert not app.patients.exists(patient_id)
    assert [e.name for e in seen][-1] == "patient_deleted"
