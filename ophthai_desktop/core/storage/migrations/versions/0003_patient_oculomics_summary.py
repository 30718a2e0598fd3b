"""patients.oculomics_summary: the list's oculomics summary, stored

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(sa.Column("oculomics_summary", sa.JSON(), nullable=True))
    _backfill()


def _backfill() -> None:
    """Compute the stored summary for patients who already have measurements."""
    from sqlalchemy.orm import Session

    from ophthai_desktop.core.services.oculomics import OculomicsService, summary_to_json

    session = Session(bind=op.get_bind())
    patients = sa.table("patients", sa.column("id"), sa.column("oculomics_summary", sa.JSON()))
    measured = [
        row[0]
        for row in session.execute(
            sa.text("SELECT DISTINCT patient_id FROM oculomics_measurements")
        )
    ]
    for start in range(0, len(measured), 500):
        ids = measured[start : start + 500]
        for patient_id, summary in OculomicsService.summaries_in(session, ids).items():
            session.execute(
                patients.update()
                .where(patients.c.id == patient_id)
                .values(oculomics_summary=summary_to_json(summary))
            )
    session.flush()


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_column("oculomics_summary")
