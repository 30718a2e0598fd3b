"""Oculomics: per-eye measurement series, their trends and reference-range flags.

The reference ranges live in one table, :data:`REFERENCE_RANGES`; everything that
flags a value (the list, the trends, the seed-shaped summary, the GUI chart) reads it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from ophthai_desktop.core.domain import Eye
from ophthai_desktop.core.errors import InvalidInput, NotFound
from ophthai_desktop.core.events import EventBus, OculomicsMeasured, PatientUpdated
from ophthai_desktop.core.records import Actor, OculomicsRecord, OculomicsSummary, PatientRecord
from ophthai_desktop.core.services.audit import AuditService
from ophthai_desktop.core.storage import Database
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.storage.to_records import oculomics_record


@dataclass(frozen=True)
class ReferenceRange:
    """Where a metric's values stop being unremarkable.

    ``low``/``high`` are exclusive bounds: a value below ``low`` or above ``high`` is
    flagged. ``plausible`` bounds what can be entered at all.
    """

    metric: str
    label: str
    unit: str
    low: float | None
    high: float | None
    plausible: tuple[float, float]
    worse: str  # "high" or "low": which direction is worse, for worst-eye summaries

    def flag(self, value: float | None) -> str | None:
        if value is None:
            return None
        if self.high is not None and value > self.high:
            return f"{self.metric}_high"
        if self.low is not None and value < self.low:
            return f"{self.metric}_low"
        return None


REFERENCE_RANGES: dict[str, ReferenceRange] = {
    r.metric: r
    for r in (
        # Ocular hypertension above 21 mmHg; hypotony below 6 mmHg.
        ReferenceRange("iop_mmhg", "Intraocular pressure", "mmHg", 6.0, 21.0, (0, 80), "high"),
        # A cup-to-disc ratio above 0.5 is a glaucoma-suspect sign.
        ReferenceRange("cup_to_disc_ratio", "Cup-to-disc ratio", "", None, 0.5, (0, 1), "high"),
        # Average peripapillary RNFL below ~80 µm is thinner than normal.
        ReferenceRange("rnfl_thickness_um", "RNFL thickness", "µm", 80.0, None, (0, 300), "low"),
        # Superficial capillary plexus vessel density below ~40 % on OCTA.
        ReferenceRange("vessel_density_pct", "Vessel density", "%", 40.0, None, (0, 100), "low"),
    )
}

METRICS: tuple[str, ...] = tuple(REFERENCE_RANGES)

#: How many dates the seed-shaped summary's ``history`` keeps (newest last).
SUMMARY_HISTORY_POINTS = 12


@dataclass(frozen=True)
class MetricTrend:
    """Least-squares change of one metric in one eye, in units per year."""

    eye: str
    metric: str
    unit: str
    points: int
    first_on: date
    last_on: date
    latest_value: float
    change_per_year: float | None  # None with fewer than two distinct dates
    latest_flag: str | None


@dataclass(frozen=True)
class OculomicsOverview:
    """Everything the oculomics view shows for one patient."""

    patient_id: str
    series: dict[str, tuple[OculomicsRecord, ...]]
    trends: tuple[MetricTrend, ...]
    summary: OculomicsSummary | None


def flags_for(
    iop_mmhg: float | None,
    cup_to_disc_ratio: float | None,
    rnfl_thickness_um: float | None,
    vessel_density_pct: float | None,
) -> tuple[str, ...]:
    values = {
        "iop_mmhg": iop_mmhg,
        "cup_to_disc_ratio": cup_to_disc_ratio,
        "rnfl_thickness_um": rnfl_thickness_um,
        "vessel_density_pct": vessel_density_pct,
    }
    return tuple(f for name, v in values.items() if (f := REFERENCE_RANGES[name].flag(v)))


def _record(row: m.OculomicsMeasurement) -> OculomicsRecord:
    return oculomics_record(
        row,
        flags_for(
            row.iop_mmhg, row.cup_to_disc_ratio, row.rnfl_thickness_um, row.vessel_density_pct
        ),
    )


def _worst(metric: str, values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present) if REFERENCE_RANGES[metric].worse == "high" else min(present)


class _Measured(Protocol):
    """What :func:`summarise` reads: a record, or a plain row of the same columns."""

    @property
    def measured_on(self) -> date: ...
    @property
    def iop_mmhg(self) -> float | None: ...
    @property
    def cup_to_disc_ratio(self) -> float | None: ...
    @property
    def rnfl_thickness_um(self) -> float | None: ...
    @property
    def vessel_density_pct(self) -> float | None: ...


def summarise(records: Sequence[_Measured]) -> OculomicsSummary | None:
    """The seed's single-valued summary: for each metric, the worse eye on the latest
    date that measured it; ``history`` holds the worse-eye IOP and vessel density per
    date (the last :data:`SUMMARY_HISTORY_POINTS` dates)."""
    if not records:
        return None
    by_date: dict[date, list[_Measured]] = defaultdict(list)
    for record in records:
        by_date[record.measured_on].append(record)
    dates = sorted(by_date)

    def latest(metric: str) -> float | None:
        for day in reversed(dates):
            value = _worst(metric, (getattr(r, metric) for r in by_date[day]))
            if value is not None:
                return value
        return None

    history = tuple(
        {
            "date": day.isoformat(),
            "iop": _worst("iop_mmhg", (r.iop_mmhg for r in by_date[day])),
            "density": _worst("vessel_density_pct", (r.vessel_density_pct for r in by_date[day])),
        }
        for day in dates[-SUMMARY_HISTORY_POINTS:]
    )
    return OculomicsSummary(
        intraocular_pressure=latest("iop_mmhg"),
        cup_to_disc_ratio=latest("cup_to_disc_ratio"),
        rnfl_thickness=latest("rnfl_thickness_um"),
        vessel_density=latest("vessel_density_pct"),
        history=history,
    )


def summary_to_json(summary: OculomicsSummary | None) -> dict[str, Any] | None:
    """The form stored in ``patients.oculomics_summary``."""
    if summary is None:
        return None
    return {
        "intraocular_pressure": summary.intraocular_pressure,
        "cup_to_disc_ratio": summary.cup_to_disc_ratio,
        "rnfl_thickness": summary.rnfl_thickness,
        "vessel_density": summary.vessel_density,
        "history": [dict(point) for point in summary.history],
    }


def summary_from_json(data: dict[str, Any] | None) -> OculomicsSummary | None:
    if not data:
        return None
    return OculomicsSummary(
        intraocular_pressure=data.get("intraocular_pressure"),
        cup_to_disc_ratio=data.get("cup_to_disc_ratio"),
        rnfl_thickness=data.get("rnfl_thickness"),
        vessel_density=data.get("vessel_density"),
        history=tuple(data.get("history") or ()),
    )


def _slope_per_year(points: Sequence[tuple[date, float]]) -> float | None:
    days = {d for d, _ in points}
    if len(days) < 2:
        return None
    origin = min(days)
    xs = [(d - origin).days / 365.25 for d, _ in points]
    ys = [v for _, v in points]
    mean_x = sum(xs) / len(xs)
    mean_y = sum(ys) / len(ys)
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return sxy / sxx


def _per_eye(records: Sequence[OculomicsRecord]) -> dict[str, tuple[OculomicsRecord, ...]]:
    return {eye.value: tuple(r for r in records if r.eye == eye.value) for eye in Eye}


def _trends(series: dict[str, tuple[OculomicsRecord, ...]]) -> tuple[MetricTrend, ...]:
    result: list[MetricTrend] = []
    for eye, records in series.items():
        for metric in METRICS:
            points = [
                (r.measured_on, value) for r in records if (value := getattr(r, metric)) is not None
            ]
            if not points:
                continue
            latest_on, latest_value = points[-1]
            result.append(
                MetricTrend(
                    eye=eye,
                    metric=metric,
                    unit=REFERENCE_RANGES[metric].unit,
                    points=len(points),
                    first_on=points[0][0],
                    last_on=latest_on,
                    latest_value=latest_value,
                    change_per_year=_slope_per_year(points),
                    latest_flag=REFERENCE_RANGES[metric].flag(latest_value),
                )
            )
    return tuple(result)


class OculomicsService:
    """Adds and reads a patient's oculomics measurements."""

    def __init__(self, db: Database, bus: EventBus) -> None:
        self._db = db
        self._bus = bus

    def add_measurement(
        self,
        patient_id: str,
        *,
        eye: str,
        measured_on: date,
        iop_mmhg: float | None = None,
        cup_to_disc_ratio: float | None = None,
        rnfl_thickness_um: float | None = None,
        vessel_density_pct: float | None = None,
        actor: Actor,
        expect: Callable[[PatientRecord], None] | None = None,
    ) -> OculomicsRecord:
        """Record one eye's measurements on one date; at least one value is needed."""
        try:
            eye_value = Eye(eye.upper()).value
        except ValueError as exc:
            raise InvalidInput("eye must be OD (right) or OS (left)", field="eye") from exc
        if measured_on > date.today():
            raise InvalidInput("the measurement date is in the future", field="measured_on")
        values = {
            "iop_mmhg": iop_mmhg,
            "cup_to_disc_ratio": cup_to_disc_ratio,
            "rnfl_thickness_um": rnfl_thickness_um,
            "vessel_density_pct": vessel_density_pct,
        }
        if all(v is None for v in values.values()):
            raise InvalidInput("give at least one measurement value")
        for name, value in values.items():
            if value is None:
                continue
            low, high = REFERENCE_RANGES[name].plausible
            if not low <= value <= high:
                label = REFERENCE_RANGES[name].label
                raise InvalidInput(f"{label} must be between {low:g} and {high:g}", field=name)
        # Imported here: the patient service imports this module.
        from ophthai_desktop.core.services.patients import PatientService

        with self._db.session() as session:
            # Locked: the summary is computed from the measurements read here, so
            # another one added meanwhile (or a deletion) waits for this commit.
            patient = PatientService.lock_in(session, patient_id, expect)
            row = m.OculomicsMeasurement(
                patient_id=patient_id, eye=eye_value, measured_on=measured_on, **values
            )
            session.add(row)
            session.flush()
            summary = self.summaries_in(session, [patient_id]).get(patient_id)
            patient.oculomics_summary = summary_to_json(summary)
            patient.updated_at = datetime.now(UTC)
            AuditService.record(
                session,
                actor,
                "create",
                "oculomics",
                row.id,
                {
                    "patient_id": patient_id,
                    "fields": sorted(k for k, v in values.items() if v is not None),
                },
            )
            record = _record(row)
            patient_record = PatientService.records_in(session, [patient])[0]
        self._bus.publish(OculomicsMeasured(record))
        # The patient's summary (its ``oculomics``) changed with it.
        self._bus.publish(PatientUpdated(patient_record))
        return record

    def list_measurements(self, patient_id: str) -> tuple[OculomicsRecord, ...]:
        """Every measurement of the patient, oldest first, with its flags."""
        with self._db.session() as session:
            if session.get(m.Patient, patient_id) is None:
                raise NotFound(f"patient {patient_id} not found")
            return self.measurements_in(session, [patient_id]).get(patient_id, ())

    def get_measurement(self, patient_id: str, measurement_id: int) -> OculomicsRecord:
        """One measurement of the patient, with its flags (where a POST's ``Location``
        points)."""
        with self._db.session() as session:
            if session.get(m.Patient, patient_id) is None:
                raise NotFound(f"patient {patient_id} not found")
            row = session.get(m.OculomicsMeasurement, measurement_id)
            if row is None or row.patient_id != patient_id:
                raise NotFound(f"oculomics measurement {measurement_id} not found")
            return _record(row)

    def series(self, patient_id: str) -> dict[str, tuple[OculomicsRecord, ...]]:
        """The patient's measurements split per eye: ``{"OD": (...), "OS": (...)}``."""
        return _per_eye(self.list_measurements(patient_id))

    def trends(self, patient_id: str) -> tuple[MetricTrend, ...]:
        """The change per year of every metric in every eye that has a value."""
        return _trends(self.series(patient_id))

    def overview(self, patient_id: str) -> OculomicsOverview:
        """Series per eye, trends and the seed-shaped summary from one read."""
        records = self.list_measurements(patient_id)
        series = _per_eye(records)
        return OculomicsOverview(patient_id, series, _trends(series), summarise(records))

    def summary(self, patient_id: str) -> OculomicsSummary | None:
        return summarise(self.list_measurements(patient_id))

    @staticmethod
    def summaries_in(session: Session, patient_ids: Sequence[str]) -> dict[str, OculomicsSummary]:
        """The seed-shaped summaries of several patients computed from their measurements:
        one query of plain columns, no ORM objects or flags. (List pages read the copy
        stored on the patient instead, kept current by :meth:`add_measurement`.)"""
        if not patient_ids:
            return {}
        table = m.OculomicsMeasurement
        rows = session.execute(
            select(
                table.patient_id,
                table.measured_on,
                table.iop_mmhg,
                table.cup_to_disc_ratio,
                table.rnfl_thickness_um,
                table.vessel_density_pct,
            )
            .where(table.patient_id.in_(patient_ids))
            .order_by(table.measured_on, table.id)
        ).all()
        grouped: dict[str, list[_Measured]] = defaultdict(list)
        for row in rows:
            grouped[row.patient_id].append(row)
        return {pid: s for pid, items in grouped.items() if (s := summarise(items)) is not None}

    @staticmethod
    def measurements_in(
        session: Session, patient_ids: Sequence[str]
    ) -> dict[str, tuple[OculomicsRecord, ...]]:
        """All measurements of several patients in one query (for list pages)."""
        grouped: dict[str, list[OculomicsRecord]] = defaultdict(list)
        if not patient_ids:
            return {}
        rows = session.scalars(
            select(m.OculomicsMeasurement)
            .where(m.OculomicsMeasurement.patient_id.in_(patient_ids))
            .order_by(m.OculomicsMeasurement.measured_on, m.OculomicsMeasurement.id)
        ).all()
        for row in rows:
            grouped[row.patient_id].append(_record(row))
        return {pid: tuple(items) for pid, items in grouped.items()}
