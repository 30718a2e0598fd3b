"""patients.name_key again: letters without a separable accent (æ, ø, ł, ...) now sort
with their base letters

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from ophthai_desktop.core.storage.name_keys import backfill

    backfill(op.get_bind())


def downgrade() -> None:
    """The keys stay as they are: the order they give is the same or better."""
