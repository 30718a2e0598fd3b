"""SQLite: ids are never reused (AUTOINCREMENT) in the tables whose rows are deleted

SQLite gives the next row the largest id + 1, so after the newest job, scan, analysis
or notification was deleted (with its patient) the next one took its id: an old link
such as ``/api/analyses/18`` then showed another patient's analysis, and the audit
trail named two different jobs by one id. ``AUTOINCREMENT`` keeps the largest id ever
given in ``sqlite_sequence``. SQLite cannot add it to a table, so each table is built
again with its rows (``Database.upgrade`` turns foreign keys off for that, or dropping
the old ``scans`` would delete the jobs and analyses that refer to it). PostgreSQL's
sequences never reuse an id: nothing to do there.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 19:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "scans",
    "jobs",
    "analyses",
    "notifications",
    "oculomics_measurements",
    "audit_events",
    "ingested_files",
)


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)


def _rebuild(*, autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass
