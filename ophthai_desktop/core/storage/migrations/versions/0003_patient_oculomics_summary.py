"""patients.oculomics_summary: the list's oculomics summary, stored

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 00:30:00.000000
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: The tables as they are at this revision, in SQLAlchemy Core: the application's ORM
#: models follow the newest schema, which may have columns this revision lacks.
PATIENTS = sa.table(
    "patients", sa.column("id", sa.String()), sa.column("oculomics_summary", sa.JSON())
)
MEASUREMENTS = sa.table(
    "oculomics_measurements",
    sa.column("id", sa.Integer()),
    sa.column("patient_id", sa.String()),
    sa.column("measured_on", sa.Date()),
    sa.column("iop_mmhg", sa.Float()),
    sa.column("cup_to_disc_ratio", sa.Float()),
    sa.column("rnfl_thickness_um", sa.Float()),
    sa.column("vessel_density_pct", sa.Float()),
)
BATCH = 500


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oculomics_summary", sa.JSON(), nullable=True))
    _backfill()


def _backfill() -> None:
    """Compute the stored summary for patients who already have measurements."""
    bind = op.get_bind()
    measured = [row[0] for row in bind.execute(sa.select(MEASUREMENTS.c.patient_id).distinct())]
    update = (
        PATIENTS.update()
        .where(PATIENTS.c.id == sa.bindparam("pid"))
        .values(oculomics_summary=sa.bindparam("summary", type_=sa.JSON()))
    )
    for start in range(0, len(measured), BATCH):
        ids = measured[start : start + BATCH]
        rows = bind.execute(
            sa.select(MEASUREMENTS)
            .where(MEASUREMENTS.c.patient_id.in_(ids))
            .order_by(MEASUREMENTS.c.measured_on, MEASUREMENTS.c.id)
        ).all()
        grouped: dict[str, list[sa.Row[Any]]] = defaultdict(list)
        for row in rows:
            grouped[row.patient_id].append(row)
        bind.execute(
            update, [{"pid": pid, "summary": _summary(items)} for pid, items in grouped.items()]
        )


# Frozen copy, as of this revision, of how ``core/services/oculomics.py`` computed the
# summary (``summarise``, ``summary_to_json``, and which direction of each metric
# ``REFERENCE_RANGES`` calls worse). Do not change it to follow the service: a
# migration must store what it stored when it was written; a new summary shape needs
# a migration of its own.

#: Whether a higher value is the worse one, per metric.
_WORSE_IS_HIGH = {
    "iop_mmhg": True,
    "cup_to_disc_ratio": True,
    "rnfl_thickness_um": False,
    "vessel_density_pct": False,
}
#: How many dates the summary's ``history`` keeps (newest last).
_HISTORY_POINTS = 12


def _worst(metric: str, values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    if not present:
        return None
    return max(present) if _WORSE_IS_HIGH[metric] else min(present)


def _summary(rows: Sequence[sa.Row[Any]]) -> dict[str, Any]:
    """The stored summary of one patient's measurements (at least one): for each
    metric, the worse eye on the latest date that measured it; ``history`` holds the
    worse-eye IOP and vessel density of the last :data:`_HISTORY_POINTS` dates."""
    by_date: dict[date, list[sa.Row[Any]]] = defaultdict(list)
    for row in rows:
        by_date[row.measured_on].append(row)
    dates = sorted(by_date)

    def latest(metric: str) -> float | None:
        for day in reversed(dates):
            value = _worst(metric, (getattr(r, metric) for r in by_date[day]))
            if value is not None:
                return value
        return None

    return {
        "intraocular_pressure": latest("iop_mmhg"),
        "cup_to_disc_ratio": latest("cup_to_disc_ratio"),
        "rnfl_thickness": latest("rnfl_thickness_um"),
        "vessel_density": latest("vessel_density_pct"),
        "history": [
            {
                "date": day.isoformat(),
                "iop": _worst("iop_mmhg", (r.iop_mmhg for r in by_date[day])),
                "density": _worst(
                    "vessel_density_pct", (r.vessel_density_pct for r in by_date[day])
                ),
            }
            for day in dates[-_HISTORY_POINTS:]
        ],
    }


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("oculomics_summary")
