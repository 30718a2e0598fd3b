"""notifications.analysis_id: the analysis that raised a notification

A notification named no analysis, so a verdict found the notifications its analysis
raised by their wording and time, and the worker's try again after a commit whose answer
was lost by ids it kept in memory. The alarm, "could not be graded" and "could not be
read" now name their analysis; those a person or the watch folder makes, and every one
stored before this revision, name none (NULL: which analysis raised an old one is not
known for certain, so none is guessed). Indexed: a verdict and the try again look
notifications up by it, and SQLite reads the index when an analysis is deleted.

SQLite cannot add a foreign key to a table: ``notifications`` is built again with its
rows, keeping ``AUTOINCREMENT`` (see 0005; ``Database.upgrade`` turns foreign keys off)
and the largest id it ever gave (the new table's ``sqlite_sequence`` starts from the
largest id kept, and a deleted newest notification's id would be given again).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 21:00:00.000000
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: As 0005 left the table on SQLite: ids never given again.
NEVER_REUSED_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    with (
        _keeping_largest_id("notifications"),
        op.batch_alter_table("notifications", table_kwargs=NEVER_REUSED_IDS) as batch_op,
    ):
        batch_op.add_column(sa.Column("analysis_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_notifications_analysis_id_analyses"),
            "analyses",
            ["analysis_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index("ix_notifications_analysis_id", ["analysis_id"], unique=False)


def downgrade() -> None:
    with (
        _keeping_largest_id("notifications"),
        op.batch_alter_table("notifications", table_kwargs=NEVER_REUSED_IDS) as batch_op,
    ):
        batch_op.drop_index("ix_notifications_analysis_id")
        batch_op.drop_constraint(op.f("fk_notifications_analysis_id_analyses"), type_="foreignkey")
        batch_op.drop_column("analysis_id")


@contextmanager
def _keeping_largest_id(table: str) -> Iterator[None]:
    """On SQLite, give ``table`` back the largest id it ever gave once it is built again
    (``sqlite_sequence``); nothing to do on PostgreSQL, whose sequence stays."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        yield
        return
    largest = bind.exec_driver_sql(
        "SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)
    ).scalar()
    yield
    if largest is None:
        return
    kept = bind.exec_driver_sql(
        "UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = ?", (largest, table)
    )
    if not kept.rowcount:  # no row copied: the new table has given no id yet
        bind.exec_driver_sql(
            "INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, largest)
        )
