"""One OphthAI per database: a second one started on a PostgreSQL database, or a SQLite
file outside its data folder, that another OphthAI is using (another workstation,
another data folder) is refused at start. It would queue the first one's running
analysis again (``requeue_interrupted``) and run it twice, and could not read the images
the first stored in its own data folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core.errors import StorageError
from tests.conftest import make_settings


@pytest.fixture
def pg_url(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        pytest.skip("a SQLite file in the data folder is held by the folder's lock")
    return db_url


def _second_refused(tmp_path: Path, url: str) -> StorageError:
    """The refusal of a second OphthAI (data folder ``two``) on ``url`` while a first
    (``one``) holds it."""
    first = build_application(make_settings(tmp_path / "one", database_url=url))
    try:
        with pytest.raises(StorageError) as refused:
            build_application(make_settings(tmp_path / "two", database_url=url))
    finally:
        first.close()
    return refused.value


@pytest.mark.postgres
def test_a_second_ophthai_on_the_same_database_is_refused(tmp_path: Path, pg_url: str) -> None:
    message = _second_refused(tmp_path, pg_url).message
    assert "another OphthAI" in message
    assert "one OphthAI at a time per database" in message
    assert ":***@" in message  # the URL, its password hidden
    assert "ophthai:ophthai@" not in message


@pytest.mark.postgres
def test_the_database_is_free_again_once_the_first_has_closed(tmp_path: Path, pg_url: str) -> None:
    first = build_application(make_settings(tmp_path / "one", database_url=pg_url))
    first.close()

    second = build_application(make_settings(tmp_path / "two", database_url=pg_url))
    second.close()


def test_a_second_ophthai_on_a_sqlite_file_outside_its_data_folder_is_refused(
    tmp_path: Path,
) -> None:
    """Two data folders given one SQLite file (``DATABASE_URL``) both ran: the data
    folder's lock does not cover a file outside it."""
    url = f"sqlite:///{tmp_path / 'shared' / 'clinic.db'}"
    refused = _second_refused(tmp_path, url)
    second = build_application(make_settings(tmp_path / "two", database_url=url))
    second.close()

    assert "another OphthAI" in refused.message
    assert str(tmp_path / "shared" / "clinic.db") in refused.message


def test_a_sqlite_file_outside_the_data_folder_is_free_once_its_holder_is_killed(
    tmp_path: Path,
) -> None:
    """The lock is the system's: a process killed (no clean-up) leaves none behind."""
    url = f"sqlite:///{tmp_path / 'shared' / 'clinic.db'}"
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from ophthai_desktop.bootstrap import build_application; "
            "from tests.conftest import make_settings; from pathlib import Path; "
            f"build_application(make_settings(Path(sys.argv[1]), database_url={url!r})); "
            "print('held', flush=True); sys.stdin.read()",
            str(tmp_path / "one"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(StorageError):
                build_application(make_settings(tmp_path / "two", database_url=url))
        finally:
            holder.kill()

    build_application(make_settings(tmp_path / "two", database_url=url)).close()
