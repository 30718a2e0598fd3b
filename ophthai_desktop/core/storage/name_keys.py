"""Filling ``patients.name_key`` (what a name sorts by) for the rows already stored: the
migrations that add the column or change the key call it."""

from __future__ import annotations

import sqlalchemy as sa

from ophthai_desktop.core.domain import text_sort_key

BATCH = 1000


def backfill(bind: sa.Connection) -> None:
    """Every stored patient's key, computed in Python: the same on every database."""
    patients = sa.table("patients", sa.column("id"), sa.column("name"), sa.column("name_key"))
    rows = bind.execute(sa.select(patients.c.id, patients.c.name)).all()
    update = (
        patients.update()
        .where(patients.c.id == sa.bindparam("pid"))
        .values(name_key=sa.bindparam("key"))
    )
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        bind.execute(
            update, [{"pid": pid, "key": text_sort_key(name or "")} for pid, name in batch]
        )
