"""patients.name_key: what the name sorts by (case and accents ignored), indexed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 18:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "name_key",
                sa.Text().with_variant(sa.Text(collation="C"), "postgresql"),
                nullable=False,
                server_default="",
            )
        )
    _backfill()
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.create_index("ix_patients_name_key_id", ["name_key", "id"], unique=False)


def _backfill() -> None:
    from ophthai_desktop.core.storage.name_keys import backfill

    backfill(op.get_bind())


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index("ix_patients_name_key_id")
        batch_op.drop_column("name_key")
