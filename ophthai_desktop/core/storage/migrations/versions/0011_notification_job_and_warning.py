"""notifications.job_id and .warning: the failed job a notification tells, and the
notifications the app means as warnings

The notification of an analysis that failed ("The analysis for patient … failed (job
#N): …") named its job only in its words: the window told it from a client's
notification that happened to open the same way by those words alone (and listed that
one as a warning), and a try again or a later analysis of the scan found it by searching
the text. It now names its job; every other notification names none.

The seed's three types (info, critical, success) have no warning, so the app stored its
warnings (an analysis that failed, an answer that could not be read, a file the watch
folder did not take in) as info, and the window told them by their words. ``warning``
says so where the app makes one; a client's is never one, whatever its words.

Those stored before are filled in from their words, as the app wrote them until this
revision: a failure is linked where its words name, exactly once, a failed job of the
same patient (the name in the words may hold anything, so every "failed (job #N): " in
them is weighed), and none is guessed otherwise; a warning is one the app wrote (a
failure so linked, an answer not read that names its analysis, a file not taken in that
names no patient). ``job_id`` is indexed: a try again and a later analysis of the scan
look notifications up by it, and SQLite reads the index when a job is deleted (with its
patient, whose notifications go too).

SQLite cannot add a foreign key to a table: ``notifications`` is built again with its
rows, keeping ``AUTOINCREMENT`` and the largest id it ever gave, as 0009 did (its code
copied here: a migration keeps doing what it did when it was written).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 13:00:00.000000
"""

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: As 0005 left the table on SQLite: ids never given again.
NEVER_REUSED_IDS = {"sqlite_autoincrement": True}

#: How the app wrote a failed analysis's notification until this revision (written out
#: here: a migration keeps doing what it did when it was written).
FAILURE_OPENING = "The analysis for patient "
NAMED_JOB = re.compile(r" failed \(job #([1-9][0-9]*)\): ")  # as the app wrote it
NOT_READ = " could not be read: "
FILE_REFUSED = " from the watch folder was not taken in: "

NOTIFICATIONS = sa.table(
    "notifications",
    sa.column("id", sa.Integer()),
    sa.column("patient_id", sa.String()),
    sa.column("analysis_id", sa.Integer()),
    sa.column("job_id", sa.Integer()),
    sa.column("message", sa.Text()),
    sa.column("type", sa.String()),
    sa.column("warning", sa.Boolean()),
)
JOBS = sa.table(
    "jobs",
    sa.column("id", sa.Integer()),
    sa.column("patient_id", sa.String()),
    sa.column("state", sa.String()),
)


def upgrade() -> None:
    with (
        _keeping_largest_id("notifications"),
        op.batch_alter_table("notifications", table_kwargs=NEVER_REUSED_IDS) as batch_op,
    ):
        batch_op.add_column(sa.Column("job_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            op.f("fk_notifications_job_id_jobs"),
            "jobs",
            ["job_id"],
            ["id"],
            ondelete="SET NULL",
        )
        batch_op.create_index("ix_notifications_job_id", ["job_id"], unique=False)
        batch_op.add_column(
            sa.Column("warning", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    _link_failure_notes()
    _mark_warnings()


def downgrade() -> None:
    with (
        _keeping_largest_id("notifications"),
        op.batch_alter_table("notifications", table_kwargs=NEVER_REUSED_IDS) as batch_op,
    ):
        batch_op.drop_column("warning")
        batch_op.drop_index("ix_notifications_job_id")
        batch_op.drop_constraint(op.f("fk_notifications_job_id_jobs"), type_="foreignkey")
        batch_op.drop_column("job_id")


def _link_failure_notes() -> None:
    """Link each stored failure notification to the failed job its words name: one
    failed job of its patient among the numbers after "failed (job #"; none where no
    job, or more than one, fits."""
    bind = op.get_bind()
    # The largest id the jobs' INTEGER column holds: a larger number in the words (the
    # name is what a person typed) names no job, and binding it would stop the upgrade.
    largest_id = 2**63 - 1 if bind.dialect.name == "sqlite" else 2**31 - 1
    notes = bind.execute(
        sa.select(NOTIFICATIONS.c.id, NOTIFICATIONS.c.patient_id, NOTIFICATIONS.c.message).where(
            NOTIFICATIONS.c.type == "info",
            NOTIFICATIONS.c.analysis_id.is_(None),
            NOTIFICATIONS.c.patient_id.is_not(None),
            NOTIFICATIONS.c.message.startswith(FAILURE_OPENING, autoescape=True),
        )
    ).all()
    for note_id, patient_id, message in notes:
        named = {int(n) for n in NAMED_JOB.findall(message) if int(n) <= largest_id}
        if not named:
            continue
        failed = bind.execute(
            sa.select(JOBS.c.id).where(
                JOBS.c.id.in_(sorted(named)),
                JOBS.c.patient_id == patient_id,
                JOBS.c.state == "failed",
            )
        ).all()
        if len(failed) == 1:
            bind.execute(
                sa.update(NOTIFICATIONS)
                .where(NOTIFICATIONS.c.id == note_id)
                .values(job_id=failed[0][0])
            )


def _mark_warnings() -> None:
    """Mark the warnings the app stored as info: a failure linked to its job, an answer
    not read (its analysis named), a file not taken in (no patient named)."""
    info = NOTIFICATIONS.c.type == "info"
    op.get_bind().execute(
        sa.update(NOTIFICATIONS)
        .where(
            info,
            sa.or_(
                NOTIFICATIONS.c.job_id.is_not(None),
                sa.and_(
                    NOTIFICATIONS.c.analysis_id.is_not(None),
                    NOTIFICATIONS.c.message.startswith(FAILURE_OPENING, autoescape=True),
                    NOTIFICATIONS.c.message.contains(NOT_READ, autoescape=True),
                ),
                sa.and_(
                    NOTIFICATIONS.c.patient_id.is_(None),
                    NOTIFICATIONS.c.analysis_id.is_(None),
                    NOTIFICATIONS.c.message.contains(FILE_REFUSED, autoescape=True),
                ),
            ),
        )
        .values(warning=True)
    )


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
