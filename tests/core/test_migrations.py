"""Upgrading a clinic's database: from every earlier revision, with rows in every table,
to the newest, on SQLite and PostgreSQL; and a database newer than the app."""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core.domain import text_sort_key
from ophthai_desktop.core.errors import StorageError
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.storage import Database
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.storage.database import MIGRATIONS_DIR
from tests.conftest import make_settings
from tests.support.old_tables import NOTIFICATIONS


def _comparing(conn: sa.Connection) -> MigrationContext:
    """A comparison of ``conn``'s schema with the models, as autogenerate makes it."""
    return MigrationContext.configure(conn, opts={"include_object": m.compared_with_models})


def _revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return [s.revision for s in reversed(list(script.walk_revisions()))]


REVISIONS = _revisions()
T0 = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)

# A clinic's rows as each revision stores them; a table or column a revision does not
# have yet is left out. Ids are the database's own (each table's sequence must go on
# from them after the upgrade); ``"@patients:1"`` stands for the id of that table's
# first row inserted here.
ROWS: dict[str, list[dict[str, Any]]] = {
    "patients": [
        {
            "id": "pt-0a1b2c3d4e5f",
            "name": "Émile Zola",
            "age": 71,
            "birth_date": date(1954, 4, 2),
            "gender": "Male",
            "symptoms": ["blurred vision", "floaters"],
            "history": "Type 2 diabetes since 2009.",
            "status": "Critical",
            "workflow_step": 3,
            "admission_date": T0,
            "appointment_date": T0 + timedelta(days=30),
            "validation_status": "approved",
            "validated_by": "Dr Ødegård",
            "validated_at": T0 + timedelta(hours=2),
            "validation_notes": "Refer to retina clinic.",
            "created_at": T0,
            "updated_at": T0 + timedelta(hours=2),
        },
        {
            "id": "pt-ffeeddccbbaa",
            "name": "Łukasz Ærøe",
            "age": None,
            "birth_date": None,
            "gender": None,
            "symptoms": [],
            "history": "",
            "status": "Pending Analysis",
            "workflow_step": 1,
            "admission_date": T0 + timedelta(days=1),
            "appointment_date": None,
            "validation_status": None,
            "validated_by": None,
            "validated_at": None,
            "validation_notes": None,
            "created_at": T0 + timedelta(days=1),
            "updated_at": T0 + timedelta(days=1),
        },
    ],
    "scans": [
        {
            "patient_id": "pt-0a1b2c3d4e5f",
            "sha256": "a" * 64,
            "media_type": "image/png",
            "width": 512,
            "height": 496,
            "size_bytes": 123456,
            "modality": "OCT",
            "laterality": "OD",
            "source": "watch_folder",
            "original_filename": "Zola_Emile_OD_macula.png",
            "acquired_at": T0 - timedelta(minutes=5),
            "created_at": T0,
        },
        {
            "patient_id": "pt-0a1b2c3d4e5f",
            "sha256": "b" * 64,
            "media_type": "image/jpeg",
            "width": 1024,
            "height": 768,
            "size_bytes": 654321,
            "modality": "fundus",
            "laterality": "OS",
            "source": "drop",
            "original_filename": None,
            "acquired_at": None,
            "created_at": T0 + timedelta(minutes=1),
        },
        {
            "patient_id": "pt-ffeeddccbbaa",
            "sha256": "c" * 64,
            "media_type": "image/png",
            "width": 300,
            "height": 300,
            "size_bytes": 4567,
            "modality": "unknown",
            "laterality": "unknown",
            "source": "api",
            "original_filename": "upload.png",
            "acquired_at": None,
            "created_at": T0 + timedelta(days=1),
        },
    ],
    "jobs": [
        {
            "kind": "analysis",
            "state": "done",
            "patient_id": "pt-0a1b2c3d4e5f",
            "scan_id": "@scans:1",
            "image_sha256": "a" * 64,
            "question": None,
            "error": None,
            "attempts": 1,
            "requested_by": "watcher:watch-folder",
            "created_at": T0,
            "started_at": T0 + timedelta(seconds=3),
            "finished_at": T0 + timedelta(seconds=95),
        },
        {
            "kind": "analysis",
            "state": "failed",
            "patient_id": "pt-0a1b2c3d4e5f",
            "scan_id": "@scans:2",
            "image_sha256": "b" * 64,
            "question": "Any sign of glaucoma?",
            "error": "CUDA out of memory",
            "attempts": 2,
            "requested_by": "gui:dr",
            "created_at": T0 + timedelta(minutes=1),
            "started_at": T0 + timedelta(minutes=2),
            "finished_at": T0 + timedelta(minutes=3),
        },
        {
            "kind": "analysis",
            "state": "queued",
            "patient_id": "pt-ffeeddccbbaa",
            "scan_id": "@scans:3",
            "image_sha256": "c" * 64,
            "question": None,
            "error": None,
            "attempts": 0,
            "requested_by": "api:127.0.0.1",
            "created_at": T0 + timedelta(days=1),
            "started_at": None,
            "finished_at": None,
        },
        {
            "kind": "analysis",
            "state": "done",
            "patient_id": None,  # an image analysed for no patient
            "scan_id": None,
            "image_sha256": "d" * 64,
            "question": None,
            "error": None,
            "attempts": 1,
            "requested_by": "api:127.0.0.1",
            "created_at": T0 + timedelta(days=2),
            "started_at": T0 + timedelta(days=2),
            "finished_at": T0 + timedelta(days=2, seconds=80),
        },
    ],
    "analyses": [
        {
            "patient_id": "pt-0a1b2c3d4e5f",
            "scan_id": "@scans:1",
            "job_id": "@jobs:1",
            "image_sha256": "a" * 64,
            "model_id": "OctoMed/OctoMed-7B",
            "model_revision": "abc123",
            "prompt_version": "v3",
            "generation_settings": {"max_new_tokens": 1024, "finish_reason": "stop"},
            "device": "cuda:0",
            "dtype": "bfloat16",
            "quantization": None,
            "reasoning_text": "The fovea shows thickening…",
            "answer_text": '{"classification": "DME", "confidence": 87}',
            "result": {"classification": "DME", "confidence": 87.0, "findings": ["fluid"]},
            "parse_status": "parsed",
            "parse_error": None,
            "status": "approved",
            "validated_by": "Dr Ødegård",
            "validated_at": T0 + timedelta(hours=2),
            "validation_notes": "Refer to retina clinic.",
            "queue_wait_s": 3.0,
            "time_to_first_token_s": 0.4,
            "total_s": 92.0,
            "prompt_tokens": 812,
            "completion_tokens": 640,
            "created_at": T0 + timedelta(seconds=95),
        },
        {
            "patient_id": None,
            "scan_id": None,
            "job_id": "@jobs:4",
            "image_sha256": "d" * 64,
            "model_id": "OctoMed/OctoMed-7B",
            "model_revision": None,
            "prompt_version": "v3",
            "generation_settings": {},
            "device": "cpu",
            "dtype": "float32",
            "quantization": None,
            "reasoning_text": "",
            "answer_text": "not json at all",
            "result": None,
            "parse_status": "parse_failed",
            "parse_error": "no JSON object in the answer",
            "status": "preliminary",
            "validated_by": None,
            "validated_at": None,
            "validation_notes": None,
            "queue_wait_s": 0.0,
            "time_to_first_token_s": None,
            "total_s": 80.0,
            "prompt_tokens": None,
            "completion_tokens": None,
            "created_at": T0 + timedelta(days=2, seconds=80),
        },
    ],
    "notifications": [
        {
            "patient_id": "pt-0a1b2c3d4e5f",
            "message": "Abnormal finding for patient Émile Zola: DME (87% confidence)",
            "type": "critical",
            "read": True,
            "timestamp": T0 + timedelta(seconds=95),
        },
        {
            "patient_id": "pt-ffeeddccbbaa",
            "message": "New scan from the watch folder",
            "type": "info",
            "read": False,
            "timestamp": T0 + timedelta(days=1),
        },
        {
            "patient_id": None,
            "message": "The model was loaded",
            "type": "success",
            "read": False,
            "timestamp": T0 + timedelta(days=2),
        },
    ],
    "oculomics_measurements": [
        {
            "patient_id": "pt-0a1b2c3d4e5f",
            "eye": "OD",
            "measured_on": date(2024, 9, 1),
            "iop_mmhg": 19.0,
            "cup_to_disc_ratio": 0.45,
            "rnfl_thickness_um": 92.0,
            "vessel_density_pct": 48.5,
            "created_at": T0,
        },
        {
            "patient_id": "pt-0a1b2c3d4e5f",
            "eye": "OS",
            "measured_on": date(2025, 3, 1),
            "iop_mmhg": 23.5,
            "cup_to_disc_ratio": None,
            "rnfl_thickness_um": None,
            "vessel_density_pct": 44.0,
            "created_at": T0,
        },
    ],
    "audit_events": [
        {
            "at": T0,
            "actor": "watch-folder",
            "origin": "watch",
            "action": "create",
            "entity_type": "patient",
            "entity_id": "pt-0a1b2c3d4e5f",
            "details": {"fields": ["name", "image"]},
        },
        {
            "at": T0 + timedelta(hours=2),
            "actor": "Dr Ødegård",
            "origin": "gui",
            "action": "validate",
            "entity_type": "analysis",
            "entity_id": "1",
            "details": {"approved": True, "notes": "Refer to retina clinic."},
        },
        {
            "at": T0 + timedelta(days=3),
            "actor": "api-client",
            "origin": "api:192.168.1.20",
            "action": "delete",
            "entity_type": "patient",
            "entity_id": "pt-000000000000",
            "details": {},
        },
    ],
    "ingested_files": [
        {
            "sha256": "a" * 64,
            "original_name": "Zola_Emile_OD_macula.png",
            "size_bytes": 123456,
            "source": "watch_folder",
            "outcome": "ingested",
            "reason": None,
            "patient_id": "pt-0a1b2c3d4e5f",
            "scan_id": "@scans:1",
            "job_id": "@jobs:1",
            "duplicate_count": 1,
            "created_at": T0,
            "last_seen_at": T0 + timedelta(hours=5),
        },
        {
            "sha256": "e" * 64,
            "original_name": "notes.png",
            "size_bytes": 12,
            "source": "watch_folder",
            "outcome": "failed",
            "reason": "not an image",
            "patient_id": None,
            "scan_id": None,
            "job_id": None,
            "duplicate_count": 0,
            "created_at": T0,
            "last_seen_at": T0,
        },
    ],
}

#: Columns the migrations fill in from the rows (checked on their own).
DERIVED = {("patients", "name_key"), ("patients", "oculomics_summary")}


def _as_written_at(revision: str, table: str, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the derived columns (and those a migration filled in before the app
    wrote them) as the app at ``revision`` wrote them."""
    if table == "jobs" and revision >= "0008":
        watcher = (row["requested_by"] or "").startswith("watcher:")
        return {**row, "priority": 0 if watcher else 1}
    if table == "notifications" and revision >= "0009":
        # The alarm names the analysis that raised it; the others none.
        return {**row, "analysis_id": "@analyses:1" if row["type"] == "critical" else None}
    if table != "patients":
        return row
    measured = row["id"] == "pt-0a1b2c3d4e5f"
    return {
        **row,
        # Before 0006 the key kept letters such as ł and æ as they are.
        "name_key": text_sort_key(row["name"]) if revision >= "0006" else row["name"].lower(),
        "oculomics_summary": {"intraocular_pressure": 23.5} if measured else None,
    }


def _fill(db: Database, revision: str) -> None:
    """Insert ``ROWS`` through the tables as the database has them at ``revision``."""
    ids: dict[str, list[Any]] = {}
    with db.engine.begin() as conn:
        tables = sa.MetaData()
        tables.reflect(conn)
        for name, rows in ROWS.items():
            if name not in tables.tables:
                continue  # not at this revision
            table = tables.tables[name]
            for row in (_as_written_at(revision, name, r) for r in rows):
                values = {
                    column: ids[value[1:].split(":")[0]][int(value.split(":")[1]) - 1]
                    if isinstance(value, str) and value.startswith("@")
                    else value
                    for column, value in row.items()
                    if column in table.c
                }
                assert set(row) - set(table.c.keys()) <= {c for _t, c in DERIVED}
                key = conn.execute(table.insert().values(**values)).inserted_primary_key
                ids.setdefault(name, []).append(key[0])


def _snapshot(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table (but Alembic's), in primary-key order."""
    with db.engine.connect() as conn:
        tables = sa.MetaData()
        tables.reflect(conn)
        return {
            name: [
                dict(row._mapping)
                for row in conn.execute(sa.select(table).order_by(*table.primary_key.columns))
            ]
            for name, table in tables.tables.items()
            if name not in {"alembic_version", "sqlite_sequence"}
        }


@pytest.mark.parametrize("revision", REVISIONS[:-1])
def test_upgrading_from_each_earlier_revision_keeps_every_row(
    db_url: str, tmp_path: Path, revision: str
) -> None:
    """A clinic's database written at ``revision``, with patients, their scans, jobs,
    analyses, notifications, measurements, audit entries and ingested files, comes out
    of the upgrade with every row and value, the models' schema, and working
    services."""
    db = Database(db_url)
    db.upgrade(revision)
    _fill(db, revision)
    before = _snapshot(db)
    db.upgrade()
    after = _snapshot(db)

    for table, rows in before.items():
        assert len(after[table]) == len(rows), table
        for old, new in zip(rows, after[table], strict=True):
            assert {k: new[k] for k in old if (table, k) not in DERIVED} == {
                k: v for k, v in old.items() if (table, k) not in DERIVED
            }, table
    assert set(after) - set(before) <= {"ingested_files"} and set(after) >= set(ROWS)
    keys = {p["id"]: p["name_key"] for p in after["patients"]}
    assert keys == {p["id"]: text_sort_key(p["name"]) for p in ROWS["patients"]}
    # 0008: the watch folder's jobs run after those someone asked for.
    assert [j["priority"] for j in after["jobs"]] == [0, 1, 1, 1]
    # 0009: no notification stored before names an analysis (none is guessed).
    if revision < "0009":
        assert [n["analysis_id"] for n in after["notifications"]] == [None, None, None]
    summaries = {p["id"]: p["oculomics_summary"] for p in after["patients"]}
    assert summaries["pt-ffeeddccbbaa"] is None
    assert summaries["pt-0a1b2c3d4e5f"]["intraocular_pressure"] == 23.5
    with db.engine.connect() as conn:
        assert compare_metadata(_comparing(conn), m.Base.metadata) == []
        if db.is_sqlite:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    db.dispose()

    # The app runs on it: reads the old rows, adds new ones after them, and a deletion
    # takes the patient's rows along.
    app = build_application(make_settings(tmp_path, database_url=db_url))
    try:
        actor = Actor(who="it", via="gui")
        old = app.patients.get_patient("pt-0a1b2c3d4e5f")
        assert old.name == "Émile Zola" and old.validation_status == "approved"
        assert len(app.patients.list_scans(old.id)) == 2
        assert app.patients.list_patients(order_by="name", descending=False).items[0].id == (
            "pt-0a1b2c3d4e5f"
        )
        assert app.jobs.list_jobs().total == 4
        assert app.notifications.list_notifications().total == 3
        note = app.notifications.create_notification("after the upgrade", actor=actor)
        assert note.id > max(n["id"] for n in after["notifications"])
        job = app.jobs.queue_patient_analysis("pt-ffeeddccbbaa", actor=actor, question="Why?")
        assert job.id > max(j["id"] for j in after["jobs"])
        app.patients.delete_patient("pt-0a1b2c3d4e5f", actor=actor)
        assert app.jobs.list_jobs(patient_id="pt-0a1b2c3d4e5f").total == 0
        assert app.audit.list_events(entity_type="patient").total >= 3
    finally:
        app.close()


def _downgrade(db: Database, revision: str) -> None:
    """Take the schema back to ``revision``, as ``Database.upgrade`` runs a migration
    (on SQLite with foreign keys off, or rebuilding a table deletes what refers to it)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    with db.engine.connect() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        with conn.begin():
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
        if db.is_sqlite:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def test_going_back_before_0009_and_forth_again_keeps_every_row(
    db_url: str, tmp_path: Path
) -> None:
    """A clinic goes back to the version before 0009 (the downgrades) and forward again:
    every row and value is kept but what 0009 added, ids are still never given
    again (SQLite's AUTOINCREMENT survives the tables built again), and the schema is the
    models' once more."""
    db = Database(db_url)
    db.upgrade()
    _fill(db, REVISIONS[-1])
    before = _snapshot(db)
    assert [n["analysis_id"] for n in before["notifications"]] == [
        before["analyses"][0]["id"],
        None,
        None,
    ]

    _downgrade(db, "0008")
    back = _snapshot(db)
    assert "analysis_id" not in back["notifications"][0]
    db.upgrade()
    again = _snapshot(db)

    for table, rows in before.items():
        for old, kept in zip(rows, back[table], strict=True):
            assert kept == {k: v for k, v in old.items() if k in kept}, table
        assert again[table] == [
            {**old, **({"analysis_id": None} if table == "notifications" else {})} for old in rows
        ], table
    with db.engine.connect() as conn:
        assert compare_metadata(_comparing(conn), m.Base.metadata) == []
        if db.is_sqlite:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
            created = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'notifications'"
            ).scalar()
            assert "AUTOINCREMENT" in str(created)
    db.dispose()


def test_a_deleted_notifications_id_is_not_given_again_after_the_newest_revision(
    tmp_path: Path,
) -> None:
    """0009 builds ``notifications`` again on SQLite: the rows came along, but the largest
    id ever given (``sqlite_sequence``) was the largest kept, so the id of the newest
    notification, deleted before the upgrade (or before a downgrade and upgrade again),
    was given to the next one: a client's link or an audit entry naming it named
    another notification, what 0005's AUTOINCREMENT prevents."""
    db = Database(f"sqlite:///{(tmp_path / 'sequence.db').as_posix()}")
    notifications = NOTIFICATIONS  # its rows name only the columns every revision has

    def add_three_and_delete_the_newest() -> int:
        with db.engine.begin() as conn:
            for _ in range(3):
                conn.execute(
                    sa.insert(notifications).values(
                        message="Watch folder: 1 new image filed",
                        type="info",
                        read=False,
                        timestamp=T0,
                    )
                )
            deleted = conn.execute(sa.select(sa.func.max(notifications.c.id))).scalar_one()
            conn.execute(sa.delete(notifications).where(notifications.c.id == deleted))
        return int(deleted)

    def next_id() -> int:
        with db.engine.begin() as conn:
            return int(
                conn.execute(
                    sa.insert(notifications)
                    .values(message="After the upgrade", type="info", read=False, timestamp=T0)
                    .returning(notifications.c.id)
                ).scalar_one()
            )

    try:
        db.upgrade(REVISIONS[-2])
        deleted = add_three_and_delete_the_newest()
        db.upgrade()
        assert next_id() > deleted

        deleted = add_three_and_delete_the_newest()
        _downgrade(db, "0008")
        db.upgrade()
        assert next_id() > deleted
    finally:
        db.close()


def test_a_database_from_a_newer_version_is_refused_with_a_clear_error(db_url: str) -> None:
    """A database an upgraded app has migrated past this version's newest revision
    (an older version was then installed over it). Before, Alembic's CommandError
    ("Can't locate revision") came out of the start as a crash; nothing may be changed
    or downgraded."""
    db = Database(db_url)
    db.upgrade()
    _fill(db, REVISIONS[-1])
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    before = _snapshot(db)

    with pytest.raises(StorageError) as refused:
        db.upgrade()

    message = refused.value.message
    assert "newer version" in message and "9999_future" in message
    assert REVISIONS[-1] in message  # what this version knows
    assert _snapshot(db) == before
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == (
            "9999_future"
        )
    db.dispose()


def test_a_postgresql_user_that_may_not_create_tables_gets_the_remedy(db_url: str) -> None:
    """PostgreSQL 15 and later let only a database's owner create tables in its public
    schema: a clinic that makes the app's role and the database apart hits this on the
    first start. Before, psycopg's InsufficientPrivilege came out as a crash."""
    if not db_url.startswith("postgresql"):
        pytest.skip("a PostgreSQL privilege")
    db = Database(db_url)
    with db.engine.begin() as conn:  # as a role that owns neither schema nor database
        conn.execute(sa.text("REVOKE CREATE ON SCHEMA public FROM CURRENT_USER"))

    with pytest.raises(StorageError) as refused:
        db.upgrade()

    assert "permission denied" in refused.value.message
    assert "GRANT CREATE ON SCHEMA public" in refused.value.message
    db.dispose()


def test_the_log_says_which_revision_the_start_upgraded_from(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A clinic's IT person reads in the log that the start changed the schema, and
    from which revision (to know what a backup taken before holds)."""
    db = Database(db_url)
    with caplog.at_level(logging.INFO, logger="ophthai_desktop.core.storage.database"):
        db.upgrade(REVISIONS[2])
        assert f"database created at revision {REVISIONS[2]}" in caplog.text
        caplog.clear()
        db.upgrade()
        assert f"database upgraded from revision {REVISIONS[2]} to {REVISIONS[-1]}" in caplog.text
        caplog.clear()
        db.upgrade()  # already at the newest: nothing said
        assert "revision" not in caplog.text
    db.dispose()


def _patient_indexes(db: Database) -> set[str]:
    return {ix["name"] for ix in sa.inspect(db.engine).get_indexes("patients")}  # type: ignore[misc]


def test_the_byte_order_sort_indexes_come_and_go_with_0010_on_postgresql(db_url: str) -> None:
    """0010 adds PostgreSQL the indexes its byte-order sorts walk, and its downgrade
    takes them away; SQLite gets none (its own indexes already serve)."""
    db = Database(db_url)
    db.upgrade()
    added = set() if db.is_sqlite else set(m.POSTGRESQL_ONLY_INDEXES)
    assert _patient_indexes(db) & m.POSTGRESQL_ONLY_INDEXES == added
    _downgrade(db, "0009")
    assert _patient_indexes(db) & m.POSTGRESQL_ONLY_INDEXES == set()
    db.upgrade()
    assert _patient_indexes(db) & m.POSTGRESQL_ONLY_INDEXES == added
    db.dispose()
