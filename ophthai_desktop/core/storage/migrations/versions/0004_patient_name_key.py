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
    """The key of every existing patient's name (computed in Python: the same on every
    database)."""
    from ophthai_desktop.core.domain import text_sort_key

    bind = op.get_bind()
    patients = sa.table("patients", sa.column("id"), sa.column("name"), sa.column("name_key"))
    rows = bind.execute(sa.select(patients.c.id, patients.c.name)).all()
    update = (
        patients.update()
        .where(patients.c.id == sa.bindparam("pid"))
        .values(name_key=sa.bindparam("key"))
    )
    for start in range(0, len(rows), 1000):
        batch = rows[start : start + 1000]
        bind.execute(
            update, [{"pid": pid, "key": text_sort_key(name or "")} for pid, name in batch]
        )


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index("ix_patients_name_key_id")
        batch_op.drop_column("name_key")
