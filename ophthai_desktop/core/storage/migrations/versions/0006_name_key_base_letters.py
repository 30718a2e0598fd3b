"""patients.name_key again: letters without a separable accent (æ, ø, ł, ...) now sort
with their base letters

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:30:00.000000
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def upgrade() -> None:
    _backfill()


def downgrade() -> None:
    """The keys stay as they are: the order they give is the same or better."""


# Frozen copy of ``core.domain.text_sort_key`` (with its ``_BASE_LETTERS``) as of this
# revision. Do not change it to follow the application: a migration must write what it
# wrote when it was written; a new key needs a migration of its own, as this one is.

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
