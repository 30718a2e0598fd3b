"""A start whose schema upgrade the data folder's full disk cannot hold: the window and
``ophthai serve`` stop, saying the disk is full and where, and the database is left as it
was (the upgrade's one transaction rolled back)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ophthai_desktop.core.storage.database import Database, _revisions
from tests.e2e.test_e2e_serve import clean_env, free_port

pytestmark = pytest.mark.e2e

#: The app, its database's disk full: no connection may grow the file past ``argv[1]``
#: pages (``PRAGMA max_page_count``), so a change that needs more fails with SQLITE_FULL.
SCRIPT = textwrap.dedent(
    """
    import sys
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    def full(dbapi_connection, _record):
        dbapi_connection.execute(f"PRAGMA max_page_count={sys.argv[1]}")

    event.listen(Pool, "connect", full)
    from ophthai_desktop.__main__ import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _schema(db: Database) -> tuple[str, list[tuple[str, ...]]]:
    with db.engine.connect() as connection:
        tables = connection.exec_driver_sql("SELECT sql FROM sqlite_master ORDER BY name")
        return _revisions(connection), [tuple(row) for row in tables]


@pytest.mark.parametrize("how", ["window", "serve"])
def test_a_start_whose_upgrade_the_full_disk_cannot_hold_says_so_and_changes_nothing(
    tmp_path: Path, how: str
) -> None:
    data = tmp_path / "data"
    db = Database(f"sqlite:///{(data / 'ophthai.db').as_posix()}")
    db.upgrade("0004")  # an older version's database: the start upgrades it
    with db.engine.connect() as connection:
        pages = connection.exec_driver_sql("PRAGMA page_count").scalar_one()
    before = _schema(db)
    db.dispose()
    command = [sys.executable, "-c", SCRIPT, str(pages + 1), "--data-dir", str(data)]
    if how == "serve":
        command += ["serve", "--port", str(free_port())]
    env = clean_env() | {"QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1, done.stderr
    said = (
        f"cannot migrate the database: the disk that holds it ({data.absolute()}) is full. "
        "Free space on it, then start OphthAI again; the database was left as it was."
    )
    assert said in done.stderr
    assert "Traceback" not in done.stderr
    try:
        assert _schema(db) == before
    finally:
        db.dispose()
