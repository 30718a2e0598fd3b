"""Tables as the migration tests write and read them at an earlier revision: the
columns named are those the revisions the tests start from have (the models' tables have
the newest revision's only, and inserting through them into an older schema fails)."""

from __future__ import annotations

import sqlalchemy as sa

#: ``notifications`` since revision 0009 (``analysis_id``); the tests that start before
#: it name only the other columns in their rows.
NOTIFICATIONS = sa.table(
    "notifications",
    sa.column("id", sa.Integer()),
    sa.column("patient_id", sa.String()),
    sa.column("analysis_id", sa.Integer()),
    sa.column("message", sa.Text()),
    sa.column("type", sa.String()),
    sa.column("read", sa.Boolean()),
    sa.column("timestamp", sa.DateTime(timezone=True)),
)
