"""jobs.priority: a clinician's analysis before the watch folder's; jobs.cancel_requested_at

The worker took the oldest queued job first, so after a watch-folder burst an analysis
asked for in the window or by an API client waited behind every file of it (hours with
the 7B model). It now takes the highest priority first, then the oldest: 1 for an
analysis someone asked for, 0 for the watch folder's.

Jobs already in the database keep their order among themselves: those the watch folder
queued (``requested_by`` ``watcher:...``) become background jobs, the others interactive.

A cancel of a running analysis lived in the worker's memory only: if the app was killed
(or its worker missed the stop window) before the worker stopped it, the next start
queued it again and it ran. ``cancel_requested_at`` keeps it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("priority", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(
            sa.Column("cancel_requested_at", sa.DateTime(timezone=True), nullable=True)
        )
    op.execute("UPDATE jobs SET priority = 0 WHERE requested_by LIKE 'watcher:%'")


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("cancel_requested_at")
        batch_op.drop_column("priority")
