"""indexes for the patient list's byte-order sorts, on PostgreSQL

The list sorts ids and statuses, and breaks every tie, byte by byte on both databases
(``in_byte_order``: ``id COLLATE "C"`` on PostgreSQL). PostgreSQL's indexes on those
columns are in the database's own collation, so no index served ``order_by=id`` any more
(every page read and sorted the whole table: 9 to 14 ms at ``skip=5000`` of 10,000
patients, under 2 ms with the index), nor ``order_by=status`` (11 to 26 ms, 2.5 ms), and
a page sorted by name sorted each run of equal keys again (3 ms, 1.7 ms). These indexes
hold the same expressions, so the planner walks them instead of sorting.

SQLite needs none: its default order is already byte order, and its existing indexes
serve. The models declare no index for one database only: ``POSTGRESQL_ONLY_INDEXES``
names these, which the schema comparison leaves aside.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 14:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.text('(id COLLATE "C")')

INDEXES: tuple[tuple[str, list[str | sa.TextClause]], ...] = (
    ("ix_patients_id_bytes", [ID]),
    ("ix_patients_name_key_id_bytes", ["name_key", ID]),
    ("ix_patients_status_id_bytes", [sa.text('(status COLLATE "C")'), ID]),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, columns in INDEXES:
        op.create_index(name, "patients", columns)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, _columns in reversed(INDEXES):
        op.drop_index(name, table_name="patients")
