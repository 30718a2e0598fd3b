"""One OphthAI per database: a second one started on a PostgreSQL database another
OphthAI is using (another workstation, another data folder) is refused at start. It
would queue the first one's running analysis again (``requeue_interrupted``) and run it
twice, and could not read the images the first stored in its own data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core.errors import StorageError
from tests.conftest import make_settings

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(db_url: str) -> str:
    if db_url.startswith("sqlite"):
        pytest.skip("a SQLite file in the data folder is held by the folder's lock")
    return db_url


def test_a_second_ophthai_on_the_same_database_is_refused(tmp_path: Path, pg_url: str) -> None:
    first = build_application(make_settings(tmp_path / "one", database_url=pg_url))
    try:
        with pytest.raises(StorageError) as refused:
            build_application(make_settings(tmp_path / "two", database_url=pg_url))
    finally:
        first.close()

    message = refused.value.message
    assert "another OphthAI" in message
    assert "one OphthAI at a time per database" in message
    assert ":***@" in message  # the URL, its password hidden
    assert "ophthai:ophthai@" not in message


def test_the_database_is_free_again_once_the_first_has_closed(tmp_path: Path, pg_url: str) -> None:
    first = build_application(make_settings(tmp_path / "one", database_url=pg_url))
    first.close()

    second = build_application(make_settings(tmp_path / "two", database_url=pg_url))
    second.close()
