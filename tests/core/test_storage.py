"""Storage: migrations, SQLite pragmas, zone-aware timestamps, the image store."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core.errors import NotFound, StorageError
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.core.storage import Database, ImageStore
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.storage.images import OLD_UPLOADS_CLEARED, STALE_STAGING_S
from ophthai_desktop.core.storage.keys import KEY_BYTES, read_or_create_key
from tests.conftest import make_settings
from tests.support.images import png_bytes

TABLES = {
    "patients",
    "scans",
    "analyses",
    "notifications",
    "oculomics_measurements",
    "jobs",
    "audit_events",
    "alembic_version",
}


def test_upgrade_creates_schema_and_is_idempotent(db_url: str) -> None:
    db = Database(db_url)
    db.upgrade()
    db.upgrade()  # a second start changes nothing
    inspector = inspect(db.engine)
    assert set(inspector.get_table_names()) >= TABLES
    patient_indexes = {ix["name"] for ix in inspector.get_indexes("patients")}
    assert {"ix_patients_created_at", "ix_patients_status_created_at"} <= patient_indexes
    notification_indexes = {ix["name"] for ix in inspector.get_indexes("notifications")}
    assert {"ix_notifications_timestamp", "ix_notifications_read_timestamp"} <= notification_indexes
    db.dispose()


def test_the_migrated_schema_is_the_models_schema(db_url: str) -> None:
    """What the migrations build is what the models declare: a column or index added to
    a model without its migration would exist in tests and not in a clinic's database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    db = Database(db_url)
    db.upgrade()
    with db.engine.connect() as connection:
        comparing = MigrationContext.configure(
            connection, opts={"include_object": m.compared_with_models}
        )
        assert compare_metadata(comparing, m.Base.metadata) == []
    db.dispose()


def test_every_foreign_key_leads_an_index(db_url: str) -> None:
    """A deleted patient, scan or job makes the database look up the rows that refer to
    it; without an index on the referring column that reads the whole table, each time
    (48 ms per deleted patient with 20,000 analyses, against 0.3 ms)."""
    db = Database(db_url)
    db.upgrade()
    inspector = inspect(db.engine)
    unindexed = []
    for table in inspector.get_table_names():
        leading = {tuple(ix["column_names"][:1]) for ix in inspector.get_indexes(table)}
        leading |= {tuple(u["column_names"][:1]) for u in inspector.get_unique_constraints(table)}
        leading.add(tuple(inspector.get_pk_constraint(table)["constrained_columns"][:1]))
        for key in inspector.get_foreign_keys(table):
            if tuple(key["constrained_columns"][:1]) not in leading:
                unindexed.append(f"{table}.{key['constrained_columns'][0]}")
    assert unindexed == []
    db.dispose()


def test_sqlite_runs_wal_with_foreign_keys(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.upgrade()
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    db.dispose()


only_posix = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


def other_users_may(path: Path) -> int:
    """The permission bits a file or folder gives its group and everyone else."""
    return path.stat().st_mode & 0o077


@only_posix
def test_the_data_folder_and_database_are_private_to_their_owner(tmp_path: Path) -> None:
    """Patient names and birth dates: other accounts on the workstation read nothing,
    whatever the umask (the image store's files already were the owner's only)."""
    old_umask = os.umask(0o022)
    try:
        application = build_application(make_settings(tmp_path))
    finally:
        os.umask(old_umask)
    try:
        data = application.settings.data_dir
        # A write in WAL mode: the -wal and -shm files exist until the database closes.
        application.patients.create_patient({"name": "Jane Doe"}, actor=Actor("t", "gui"))
        database_files = sorted(data.glob("ophthai.db*"))
        assert {p.name for p in database_files} >= {"ophthai.db", "ophthai.db-wal"}
        assert {p.name: other_users_may(p) for p in [data, *database_files]} == {
            p.name: 0 for p in [data, *database_files]
        }
    finally:
        application.close()


@only_posix
def test_a_database_left_readable_by_others_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "ophthai.db"
    Database(f"sqlite:///{path.as_posix()}").upgrade()
    path.chmod(0o644)

    Database(f"sqlite:///{path.as_posix()}")

    assert other_users_may(path) == 0
    assert path.stat().st_mode & 0o600 == 0o600


@only_posix
def test_a_database_created_through_a_link_is_private_to_its_owner(tmp_path: Path) -> None:
    """The link stays and what it names is made owner-only (SQLite, which follows it,
    made it by the umask)."""
    target = tmp_path / "disk" / "ophthai.db"
    target.parent.mkdir()
    path = tmp_path / "ophthai.db"
    path.symlink_to(target)
    old_umask = os.umask(0o022)
    try:
        Database(f"sqlite:///{path.as_posix()}").upgrade()
    finally:
        os.umask(old_umask)

    assert path.is_symlink() and target.is_file()
    assert other_users_may(target) == 0


@only_posix
def test_a_database_linked_to_a_disk_not_connected_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "usb-disk" / "ophthai.db"
    path = tmp_path / "ophthai.db"
    path.symlink_to(target)

    with pytest.raises(StorageError) as refused:
        Database(f"sqlite:///{path.as_posix()}").upgrade()

    assert refused.value.message.startswith(
        f"cannot create the database file {path}: {path} is a link to {target}, which does "
        "not exist (a disk not connected?)"
    )
    assert path.is_symlink() and not target.parent.exists()


@only_posix
def test_a_database_file_that_cannot_be_created_private_is_refused_not_left_to_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite, left to try, would create it by the umask (0644: every account reads the
    patients' names)."""
    path = tmp_path / "ophthai.db"
    real_open = os.open

    def failing_open(name: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(name) == str(path):
            raise OSError(errno.EIO, os.strerror(errno.EIO), os.fspath(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", failing_open)
    old_umask = os.umask(0o022)
    try:
        with pytest.raises(StorageError) as refused:
            Database(f"sqlite:///{path.as_posix()}").upgrade()
    finally:
        os.umask(old_umask)

    assert refused.value.message == (
        f"cannot create the database file {path}: {os.strerror(errno.EIO)}"
    )
    assert not path.exists()


@only_posix
def test_an_older_versions_default_data_folder_is_made_private_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Versions before the folder was made 0700 created the default one by the umask
    (0755): other accounts listed the default watch folder inside it, whose processed
    and failed files are named after patients. A folder others may write into was
    shared on purpose (a device's account writing scans), and one chosen with
    OPHTHAI_DATA_DIR keeps its mode whatever it is."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    default = Settings(_env_file=None)  # type: ignore[call-arg]
    assert default.data_dir.is_relative_to(tmp_path)
    default.data_dir.mkdir(parents=True, mode=0o755)
    default.data_dir.chmod(0o755)
    processed = default.data_dir / "incoming_scans" / "processed"
    processed.mkdir(parents=True)
    (processed / "Zorblax Quimby OD.png").write_bytes(png_bytes())

    build_application(default).close()

    assert default.data_dir.stat().st_mode & 0o777 == 0o700

    default.data_dir.chmod(0o775)  # shared on purpose: others may write into it
    build_application(default).close()
    assert default.data_dir.stat().st_mode & 0o777 == 0o775

    chosen = make_settings(tmp_path / "chosen")
    chosen.data_dir.mkdir(parents=True, mode=0o755)
    chosen.data_dir.chmod(0o755)
    build_application(chosen).close()
    assert chosen.data_dir.stat().st_mode & 0o777 == 0o755


def test_a_key_is_made_once_private_and_made_again_where_it_cannot_be_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The data folder's key (it seals the API's page cursors) is read back as it was
    made; a file cut short is replaced; one that can be neither read nor replaced (a
    folder in its place) still gives a key, for this run, and says so in the log."""
    path = tmp_path / "cursor.key"

    key = read_or_create_key(path)

    assert len(key) == KEY_BYTES
    assert read_or_create_key(path) == key
    if os.name == "posix":
        assert path.stat().st_mode & 0o077 == 0
    path.write_bytes(key[:5])
    remade = read_or_create_key(path)
    assert len(remade) == KEY_BYTES and remade != key
    assert path.read_bytes() == remade
    path.unlink()
    path.mkdir()
    with caplog.at_level(logging.WARNING, logger="ophthai_desktop.core.storage.keys"):
        for_this_run = read_or_create_key(path)
    assert len(for_this_run) == KEY_BYTES and for_this_run not in (key, remade)
    assert path.is_dir()
    assert "could not be written" in caplog.text
    assert str(tmp_path) not in caplog.text


def test_foreign_keys_are_enforced(db_url: str) -> None:
    db = Database(db_url)
    db.upgrade()
    with pytest.raises(IntegrityError), db.session() as session:
        session.add(m.Notification(patient_id="nobody", message="x", type="info"))
    db.dispose()


def test_a_notification_outlives_the_analysis_it_names_but_not_its_patient(
    db_url: str,
) -> None:
    """An analysis deleted on its own (none is today: analyses go with their patient)
    leaves the notification it raised, naming no analysis: the clinician deletes
    notifications. Deleting the patient takes both, as before."""
    db = Database(db_url)
    db.upgrade()
    with db.session() as session:
        session.add(m.Patient(id="p1", name="n", status="Stable", symptoms=[]))
        session.flush()  # no relationship orders the inserts
        alone = m.Analysis(model_id="x", parse_status="parsed")  # an image of no patient
        theirs = m.Analysis(patient_id="p1", model_id="x", parse_status="parsed")
        session.add_all([alone, theirs])
        session.flush()
        kept = m.Notification(analysis_id=alone.id, message="DME", type="critical")
        gone = m.Notification(
            patient_id="p1", analysis_id=theirs.id, message="DME", type="critical"
        )
        session.add_all([kept, gone])
        session.flush()
        ids = (alone.id, kept.id, gone.id)
    with db.session() as session:
        session.execute(text("DELETE FROM analyses WHERE id = :id"), {"id": ids[0]})
        session.execute(text("DELETE FROM patients WHERE id = 'p1'"))
    with db.session() as session:
        note = session.get(m.Notification, ids[1])
        assert note is not None and note.analysis_id is None
        assert session.get(m.Notification, ids[2]) is None
    db.dispose()


def test_timestamps_come_back_in_utc(db_url: str) -> None:
    db = Database(db_url)
    db.upgrade()
    plus_two = timezone(timedelta(hours=2))
    local = datetime(2026, 3, 1, 12, 0, tzinfo=plus_two)
    with db.session() as session:
        session.add(
            m.Patient(id="p1", name="n", status="Stable", symptoms=[], admission_date=local)
        )
    with db.session() as session:
        stored = session.get(m.Patient, "p1")
        assert stored is not None
        assert stored.admission_date == local
        assert stored.admission_date.tzinfo is not None
        assert stored.admission_date.utcoffset() == timedelta(0)
    db.dispose()


def test_naive_timestamps_are_refused(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'x.db'}")
    db.upgrade()
    with pytest.raises(Exception, match="naive"), db.session() as session:
        session.add(
            m.Patient(
                id="p1", name="n", status="Stable", symptoms=[], admission_date=datetime(2026, 1, 1)
            )
        )
        session.flush()
    db.dispose()


def test_image_store_is_content_addressed(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    data = png_bytes()
    first = store.put(data)
    second = store.put(data)
    assert first.sha256 == second.sha256
    assert first.created and not second.created
    assert first.path.name == first.sha256
    assert first.path.parent.name == first.sha256[:2]
    files = [p for p in (tmp_path / "images").rglob("*") if p.is_file()]
    assert files == [first.path]
    assert store.read(first.sha256) == data
    store.discard(first.sha256)
    with pytest.raises(NotFound):
        store.read(first.sha256)
    with pytest.raises(NotFound):
        store.path_for("../../etc/passwd")


@pytest.mark.skipif(sys.platform == "win32", reason="reads a POSIX descriptor's access mode")
def test_a_stored_image_is_flushed_where_only_a_writable_handle_can_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Windows' fsync (FlushFileBuffers) refuses a handle opened read-only with EBADF:
    the watch folder's flush before the source moves away must not fail there."""
    import errno
    import fcntl

    from ophthai_desktop.core.storage import images as images_module

    real_fsync = os.fsync

    def windows_fsync(fd: int) -> None:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        real_fsync(fd)

    monkeypatch.setattr(images_module, "FLUSH_NEEDS_WRITE", True, raising=False)
    monkeypatch.setattr(images_module.os, "fsync", windows_fsync)
    store = ImageStore(tmp_path / "images")
    data = png_bytes()
    stored = store.put(data, sync=False)
    store.sync(stored.sha256)
    assert store.read(stored.sha256) == data


@pytest.mark.skipif(not hasattr(os, "copy_file_range"), reason="no kernel copy here")
def test_a_staged_copy_is_the_source_bytes_until_kept_or_dropped(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    source = tmp_path / "scan.png"
    data = png_bytes((300, 200))
    source.write_bytes(data)

    with source.open("rb") as handle:
        staged = store.stage_copy(handle.fileno(), len(data))
        dropped = store.stage_copy(handle.fileno(), len(data))
    assert staged is not None and dropped is not None
    assert staged.read_bytes() == data and staged.parent != source.parent
    source.write_bytes(b"changed afterwards")  # the copy is its own file
    kept = store.keep_staged(staged, hashlib.sha256(data).hexdigest())
    store.drop_staged(dropped)

    assert kept.created and store.read(kept.sha256) == data
    assert [p for p in (tmp_path / "images").rglob("*") if p.is_file()] == [kept.path]


def test_staged_copies_left_by_a_crash_are_cleared_once_stale(tmp_path: Path) -> None:
    staging = tmp_path / "images" / ".staging"
    staging.mkdir(parents=True)
    stale, fresh = staging / "copy-old", staging / "copy-new"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - STALE_STAGING_S - 60
    os.utime(stale, (old, old))

    ImageStore(tmp_path / "images")

    assert not stale.exists() and fresh.exists()  # another process may be writing it


def test_an_upload_cut_off_by_a_crash_is_cleared_once_stale(tmp_path: Path) -> None:
    """A process killed while it stores an upload (the window's drop, the API's) leaves
    its half-written file where the start-up clean-up finds it: no file is left in the
    store that no image is."""
    root = tmp_path / "images"
    crash = (
        "import os, sys\n"
        "from ophthai_desktop.core.storage.images import ImageStore\n"
        "store = ImageStore(__import__('pathlib').Path(sys.argv[1]))\n"
        "os.replace = lambda *a: os._exit(3)  # killed between the write and the rename\n"
        "store.put(b'image bytes' * 1000)\n"
    )
    done = subprocess.run([sys.executable, "-c", crash, str(root)], check=False, timeout=60)
    assert done.returncode == 3
    left = [p for p in root.rglob("*") if p.is_file()]
    assert len(left) == 1  # the half-stored upload
    old = time.time() - STALE_STAGING_S - 60
    os.utime(left[0], (old, old))

    ImageStore(root)

    assert [p for p in root.rglob("*") if p.is_file()] == []


def test_uploads_an_older_version_left_beside_the_images_are_cleared_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before uploads were written in .staging/, one cut off by a crash stayed beside the
    stored images for good (``images/ab/.incoming-xxxxxxxx``). The start-up clears those,
    once an hour old like staged copies, and nothing else."""
    root = tmp_path / "images"
    stored = ImageStore(root).put(b"a stored image")
    (root / OLD_UPLOADS_CLEARED).rmdir()  # a store of an older version: never searched
    fan_out = stored.path.parent
    old = time.time() - STALE_STAGING_S - 60
    leftovers = [fan_out / ".incoming-a1b2_c3d", root / "00" / ".incoming-zzzzzzzz"]
    kept = [
        fan_out / ".incoming-newer123",  # an older version sharing the store may write it
        fan_out / ".incoming-a1b2_c3d.png",  # not that temporary form
        fan_out / ".incoming-short",
        root / ".incoming-abcdefgh",  # not where uploads were written
        root / "not-hex" / ".incoming-abcdefgh",
    ]
    for path in leftovers + kept:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half an upload")
    outside = tmp_path / "Jane Doe.png"
    outside.write_bytes(b"not the store's")
    link = fan_out / ".incoming-linked00"
    link.symlink_to(outside)
    for path in [*leftovers, *kept[1:], stored.path, outside]:
        os.utime(path, (old, old))

    with caplog.at_level(logging.INFO):
        store = ImageStore(root)

    assert [p for p in leftovers if p.exists()] == []
    assert all(p.exists() for p in kept) and link.is_symlink() and outside.exists()
    assert store.read(stored.sha256) == b"a stored image"
    assert "cleared 2 unfinished uploads" in caplog.text and "incoming-" not in caplog.text
    # One was too new to clear: searched again at the next start, cleared once old.
    assert not (root / OLD_UPLOADS_CLEARED).exists()
    os.utime(kept[0], (old, old))
    ImageStore(root)
    assert not kept[0].exists() and (root / OLD_UPLOADS_CLEARED).is_dir()


def test_a_store_found_free_of_old_uploads_is_not_searched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No version since .staging/ leaves uploads beside the images: once the search
    found none, later starts do not list the store's folders (seconds at 100,000 images
    on a cold disk)."""
    root = tmp_path / "images"
    stored = ImageStore(root).put(b"a stored image")
    assert (root / OLD_UPLOADS_CLEARED).is_dir()
    assert [p for p in root.rglob("*") if p.is_file()] == [stored.path]  # files are images
    listed: list[str] = []
    real_scandir = os.scandir

    def scandir(path: Any = ".") -> Any:
        listed.append(os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    store = ImageStore(root)

    assert str(stored.path.parent) not in listed and str(root) not in listed
    assert store.read(stored.sha256) == b"a stored image"


def test_storage_error_when_database_is_unreachable(tmp_path: Path) -> None:
    from ophthai_desktop.core.errors import StorageError

    db = Database("postgresql://nobody:nothing@127.0.0.1:9/none?connect_timeout=2")
    try:
        with pytest.raises(StorageError), db.session() as session:
            session.execute(text("SELECT 1"))
        assert "nothing" not in db.describe()  # the password is never shown
    finally:
        db.close()  # it asks the database on a thread of its own until then


def test_a_start_that_cannot_connect_says_so_and_names_the_database(tmp_path: Path) -> None:
    from ophthai_desktop.core.errors import StorageError

    # Nothing listens there: the server is down (a wrong password or database name is
    # refused by the server the same way, before any migration runs).
    db = Database("postgresql://clinic:s3cret-pw@127.0.0.1:9/ophthai?connect_timeout=2")
    with pytest.raises(StorageError) as refused:
        db.upgrade()
    message = refused.value.message
    assert message.startswith(
        "cannot connect to the database postgresql+psycopg://clinic:***@127.0.0.1:9/ophthai"
    )
    assert "refused" in message.lower() and "migrate" not in message
    assert "s3cret-pw" not in message


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://clinic:Qx@Zk/Vm:Jt@localhost/ophthai",  # the rest read as the database
        "postgresql://clinic:Qx@ZkVmJt@localhost/ophthai",  # the rest read as the host
        "postgresql:/clinic:QxZkVmJt@localhost/ophthai",  # not a URL at all
    ],
)
def test_a_database_url_the_app_cannot_read_is_refused_without_showing_the_password(
    url: str,
) -> None:
    from ophthai_desktop.core.errors import StorageError

    with pytest.raises(StorageError) as refused:
        Database(url)
    message = refused.value.message
    assert "write" in message  # how to write it instead
    for fragment in ("Qx", "Zk", "Vm", "Jt"):
        assert fragment not in message


@pytest.mark.parametrize(
    "url",
    ["mysql://clinic:QxZkVmJt@localhost/ophthai", "mssql+pyodbc://clinic:QxZkVmJt@dsn"],
)
def test_a_database_ophthai_does_not_run_on_is_refused_naming_those_it_does(url: str) -> None:
    """A MySQL URL failed at start with only "No module named 'MySQLdb'" (SQLAlchemy
    reached for a driver that is not installed), and with a driver would have failed
    later on SQL only SQLite and PostgreSQL speak."""
    from ophthai_desktop.core.errors import StorageError

    with pytest.raises(StorageError) as refused:
        Database(url)
    message = refused.value.message
    assert "OphthAI runs on SQLite (leave DATABASE_URL unset) or PostgreSQL" in message
    assert "QxZkVmJt" not in message


def test_a_password_written_with_percent_escapes_connects_as_itself() -> None:
    db = Database("postgresql://clinic:p%40ss%2Fw%3Ard%25@db.clinic.lan/ophthai")
    assert db.url.password == "p@ss/w:rd%"
    assert (db.url.host, db.url.database) == ("db.clinic.lan", "ophthai")
    assert db.describe() == "postgresql+psycopg://clinic:***@db.clinic.lan/ophthai"


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_connection_the_server_closed_is_replaced_before_use(db_url: str) -> None:
    """A PostgreSQL server restarted under the running app closes every pooled
    connection: the first request after it works all the same (the pool tests a
    connection before handing it out). A database server's connections: PostgreSQL
    only."""
    db = Database(db_url)
    with db.session() as session:
        pooled = session.scalar(text("SELECT pg_backend_pid()"))
    other = create_engine(db.url)  # closes it, as the server's restart does
    with other.connect() as connection:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pooled})
    other.dispose()
    with db.session() as session:
        assert session.scalar(text("SELECT pg_backend_pid()")) != pooled
    db.dispose()


def test_created_at_is_now(db_url: str) -> None:
    db = Database(db_url)
    db.upgrade()
    with db.session() as session:
        session.add(m.Notification(message="x", type="info"))
    with db.session() as session:
        row = session.query(m.Notification).one()
        assert abs(row.timestamp - datetime.now(UTC)) < timedelta(minutes=1)
    db.dispose()


def test_migration_backfills_the_stored_oculomics_summary(db_url: str) -> None:
    db = Database(db_url)
    db.upgrade("0002")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO patients (id, name, symptoms, history, status, workflow_step,"
                " admission_date, created_at, updated_at) VALUES ('p1', 'n', '[]', '',"
                " 'Stable', 1, :t, :t, :t)"
            ),
            {"t": datetime(2026, 1, 1, tzinfo=UTC)},
        )
        for eye, day, iop in (("OD", "2025-01-01", 18.0), ("OS", "2026-01-01", 23.0)):
            conn.execute(
                text(
                    "INSERT INTO oculomics_measurements (patient_id, eye, measured_on,"
                    " iop_mmhg, created_at) VALUES ('p1', :eye, :day, :iop, :t)"
                ),
                {"eye": eye, "day": date.fromisoformat(day), "iop": iop, "t": datetime.now(UTC)},
            )
    db.upgrade()
    with db.session() as session:
        stored = session.get(m.Patient, "p1")
        assert stored is not None and stored.oculomics_summary is not None
        assert stored.oculomics_summary["intraocular_pressure"] == 23.0
        assert [h["date"] for h in stored.oculomics_summary["history"]] == [
            "2025-01-01",
            "2026-01-01",
        ]
    db.dispose()


def test_migration_backfills_the_name_sort_key(db_url: str) -> None:
    db = Database(db_url)
    db.upgrade("0003")
    with db.engine.begin() as conn:
        for pid, name in (("p1", "Émile Zola"), ("p2", "adam")):
            conn.execute(
                text(
                    "INSERT INTO patients (id, name, symptoms, history, status, workflow_step,"
                    " admission_date, created_at, updated_at) VALUES (:id, :name, '[]', '',"
                    " 'Stable', 1, :t, :t, :t)"
                ),
                {"id": pid, "name": name, "t": datetime(2026, 1, 1, tzinfo=UTC)},
            )
    db.upgrade()
    with db.session() as session:
        keys = {p.id: p.name_key for p in session.query(m.Patient)}
    assert keys == {"p1": "emile zola", "p2": "adam"}
    indexes = {ix["name"] for ix in inspect(db.engine).get_indexes("patients")}
    assert "ix_patients_name_key_id" in indexes
    db.dispose()


def test_migration_sorts_letters_without_accents_among_their_base_letters(
    db_url: str,
) -> None:
    db = Database(db_url)
    db.upgrade("0005")
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO patients (id, name, name_key, symptoms, history, status,"
                " workflow_step, admission_date, created_at, updated_at) VALUES ('p1',"
                " 'Øyvind Ærø', 'øyvind ærø', '[]', '', 'Stable', 1, :t, :t, :t)"
            ),
            {"t": datetime(2026, 1, 1, tzinfo=UTC)},
        )
    db.upgrade()
    with db.session() as session:
        assert session.get(m.Patient, "p1").name_key == "oyvind aero"  # type: ignore[union-attr]
    db.dispose()


def test_an_id_is_never_given_again_after_its_row_is_deleted(db_url: str) -> None:
    """SQLite gave the next row the largest id + 1: deleting the newest notification
    (or job, scan, analysis with its patient) handed its id to the next one."""
    db = Database(db_url)
    db.upgrade()
    with db.session() as session:
        first, newest = (
            m.Notification(message="a", type="info"),
            m.Notification(message="b", type="info"),
        )
        session.add_all([first, newest])
        session.flush()
        newest_id = newest.id
    with db.session() as session:
        session.execute(text("DELETE FROM notifications WHERE id = :id"), {"id": newest_id})
    with db.session() as session:
        again = m.Notification(message="c", type="info")
        session.add(again)
        session.flush()
        assert again.id > newest_id
    db.dispose()


def test_the_migration_to_unreused_ids_keeps_every_row_and_reference(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    db.upgrade("0004")
    t = datetime(2026, 1, 1, tzinfo=UTC)
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO patients (id, name, name_key, symptoms, history, status,"
                " workflow_step, admission_date, created_at, updated_at) VALUES"
                " ('p1', 'n', 'n', '[]', '', 'Stable', 1, :t, :t, :t)"
            ),
            {"t": t},
        )
        conn.execute(
            text(
                "INSERT INTO scans (id, patient_id, sha256, media_type, modality, laterality,"
                " width, height, size_bytes, source, created_at) VALUES"
                " (7, 'p1', :sha, 'image/png', 'OCT', 'OD', 10, 10, 100, 'drop', :t)"
            ),
            {"sha": "a" * 64, "t": t},
        )
        conn.execute(
            text(
                "INSERT INTO jobs (id, kind, patient_id, scan_id, image_sha256, state, attempts,"
                " created_at) VALUES (9, 'analysis', 'p1', 7, :sha, 'done', 1, :t)"
            ),
            {"sha": "a" * 64, "t": t},
        )
    db.upgrade()
    with db.session() as session:
        job = session.get(m.Job, 9)
        assert job is not None and job.scan_id == 7 and job.patient_id == "p1"
        assert session.get(m.Scan, 7) is not None
        assert session.execute(text("PRAGMA foreign_keys")).scalar() == 1  # on again
        assert session.execute(text("PRAGMA foreign_key_check")).all() == []
        created = session.execute(
            text("SELECT sql FROM sqlite_master WHERE name = 'jobs'")
        ).scalar()
        assert "AUTOINCREMENT" in str(created)
    with db.session() as session:  # deleting the patient still takes their rows along
        session.execute(text("DELETE FROM patients WHERE id = 'p1'"))
    with db.session() as session:
        assert session.get(m.Job, 9) is None and session.get(m.Scan, 7) is None
    db.dispose()


def _start_against_a_silent_server() -> tuple[int, BaseException | None]:
    """Start (upgrade) a database whose PostgreSQL server accepts connections and never
    answers (a host gone from the network, as its clients see it); its port and what the
    start raised, within 20 s."""
    import socket
    import threading

    silent = socket.socket()  # accepts (the kernel does) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    outcome: list[BaseException | None] = []

    def start() -> None:
        db = Database(f"postgresql://clinic:pw@127.0.0.1:{port}/ophthai")
        try:
            db.upgrade()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
        finally:
            db.close()

    starting = threading.Thread(target=start, daemon=True)
    starting.start()
    starting.join(20)
    silent.close()
    assert outcome, "the start still waited for the database after 20 s"
    return port, outcome[0]


def test_a_start_whose_database_server_never_answers_stops_within_the_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A PostgreSQL host gone from the network (switched off, a VPN down): the
    connection is accepted nowhere and refused by no one. The start waited for the
    system's TCP to give up (minutes), saying nothing; it stops with the reason once
    the connect timeout (here shortened) has passed."""
    from ophthai_desktop.core.errors import StorageError
    from ophthai_desktop.core.storage import database

    monkeypatch.setattr(database, "POSTGRES_CONNECT_TIMEOUT_S", 2, raising=False)
    port, raised = _start_against_a_silent_server()
    assert isinstance(raised, StorageError)
    assert raised.message.startswith(
        f"cannot connect to the database postgresql+psycopg://clinic:***@127.0.0.1:{port}/ophthai"
    )


def test_a_connect_timeout_set_for_libpq_in_the_environment_stands(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A clinic may bound libpq's connection wait for all its tools with
    PGCONNECT_TIMEOUT; OphthAI's own 10 s, passed to every connection, overrode it (as a
    URL's ``connect_timeout`` does not): the start waited for OphthAI's wait, not the
    clinic's (here 2 s against a lengthened 60 s)."""
    from ophthai_desktop.core.errors import StorageError
    from ophthai_desktop.core.storage import database

    monkeypatch.setattr(database, "POSTGRES_CONNECT_TIMEOUT_S", 60, raising=False)
    monkeypatch.setenv("PGCONNECT_TIMEOUT", "2")
    _port, raised = _start_against_a_silent_server()
    assert isinstance(raised, StorageError)


@pytest.mark.parametrize(
    "db_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_lock_timeout_the_url_sets_stands(db_url: str) -> None:
    """A URL may set the lock wait with ``options=-c lock_timeout=...`` (so may
    PGOPTIONS, or the role's settings); OphthAI's SET on each new connection overrode
    it. Where none is set, the wait is OphthAI's 30 s."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    own = make_url(db_url).update_query_dict({"options": "-c lock_timeout=5000"})
    for url, wanted in ((db_url, "30s"), (own.render_as_string(hide_password=False), "5s")):
        db = Database(url)
        try:
            with db.engine.connect() as connection:
                assert connection.execute(text("SHOW lock_timeout")).scalar() == wanted
        finally:
            db.dispose()


@pytest.mark.parametrize("where", ["whole file", "past its header"])
def test_a_start_on_a_database_file_that_is_not_one_says_it_is_damaged(
    tmp_path: Path, where: str
) -> None:
    """Garbage where ophthai.db was (another file saved over it), or over its pages: the
    start names the file and what to do, not "cannot connect to the database" as for a
    server down, nor "cannot migrate"; the file is left as it was."""
    from ophthai_desktop.core.errors import StorageError

    path = tmp_path / "ophthai.db"
    if where == "whole file":
        garbage = bytes(range(256)) * 64
    else:
        made = Database(f"sqlite:///{path}")
        made.upgrade()
        made.close()
        whole = path.read_bytes()
        garbage = whole[:8192] + b"\xff" * (len(whole) - 8192)
    path.write_bytes(garbage)
    db = Database(f"sqlite:///{path}")
    try:
        with pytest.raises(StorageError) as refused:
            db.upgrade()
    finally:
        db.close()
    message = refused.value.message
    assert message.startswith(f"the database file {path} is damaged or not an SQLite database")
    assert "Restore it from a backup" in message
    assert "cannot connect" not in message
    assert path.read_bytes() == garbage
