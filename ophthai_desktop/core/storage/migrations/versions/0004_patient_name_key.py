"""patients.name_key: what the name sorts by (case and accents ignored), indexed

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 18:00:00.000000
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


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


def downgrade() -> None:
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index("ix_patients_name_key_id")
        batch_op.drop_column("name_key")


# Frozen copy of ``core.domain.text_sort_key`` (with its ``_BASE_LETTERS``) as of
# revision 0006: the key this migration has written since 0006 came (before, it wrote
# the key without the base letters, and 0006 wrote it again). Do not change it to
# follow the application: a migration must write what it wrote when it was written; a
# new key needs a migration of its own, as 0006 is.

#: Letters that carry no separable accent, sorted with their base letters.
_BASE_LETTERS = str.maketrans(
    {"æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "œ": "oe", "\u0131": "i"}
)


def _name_key(text: str) -> str:
    """What a name sorts by: case and accents ignored, the same on every database."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_BASE_LETTERS))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _backfill() -> None:
    """Every stored patient's key, computed in Python: the same on every database."""
    bind = op.get_bind()
    patients = sa.table(
        "patients",
        sa.column("id", sa.String()),
        sa.column("name", sa.String()),
        sa.column("name_key", sa.Text()),
    )
    rows = bind.execute(sa.select(patients.c.id, patients.c.name)).all()
    update = (
        patients.update()
        .where(patients.c.id == sa.bindparam("pid"))
        .values(name_key=sa.bindparam("key"))
    )
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        bind.execute(update, [{"pid": pid, "key": _name_key(name or "")} for pid, name in batch])
