"""Shared fixtures: every test gets its own data folder and settings, never the user's.

Storage and service tests that take the ``db_url`` fixture run against SQLite and, when
``OPHTHAI_TEST_DATABASE_URL`` is set (CI sets it), against that PostgreSQL server too.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ophthai_desktop.bootstrap import Application, build_application
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.settings import Settings
from tests.support.images import jpeg_bytes, png_bytes
from tests.support.tiny_checkpoint import build_tiny_qwen25vl, train_tiny_answerer

__all__ = ["jpeg_bytes", "png_bytes"]

#: How long a qtbot wait gives its condition or signal when the test names no time.
#: pytest-qt's own 5 s was overrun by waits that CI's loaded two cores, running the
#: whole suite in one process, made slow (an import's scan shown, a dialog's patient
#: created); only a failing test waits the longer time.
QT_WAIT_MS = 20_000

SEED_NAMES = (
    "DATABASE_URL",
    "LOAD_MODEL_ON_STARTUP",
    "WATCH_FOLDER_ENABLED",
    "WATCH_FOLDER_PATH",
    "DEBUG",
    "CORS_ORIGINS",
)
POSTGRES_URL = os.environ.get("OPHTHAI_TEST_DATABASE_URL")

# Subprocesses that tests start (``ophthai serve``, the window) never read or write the
# user's data and settings folders; in this process every test passes its own Settings
# with ``_env_file=None`` (see make_settings).
_SANDBOX = Path(tempfile.mkdtemp(prefix="ophthai-tests-home-"))
atexit.register(shutil.rmtree, _SANDBOX, ignore_errors=True)
os.environ["XDG_CONFIG_HOME"] = str(_SANDBOX / "config")
os.environ["XDG_DATA_HOME"] = str(_SANDBOX / "data")

#: The test run's own switches (not the app's settings): the database server to test
#: against, and the frozen build the frozen smoke test runs (tests/e2e/test_frozen_app.py).
TEST_SWITCHES = {"OPHTHAI_TEST_DATABASE_URL", "OPHTHAI_FROZEN_APP"}

# Nothing from the developer's environment or .env leaks into a test.
for _name in list(os.environ):
    if _name.startswith("OPHTHAI_") and _name not in TEST_SWITCHES:
        del os.environ[_name]
for _name in SEED_NAMES:
    os.environ.pop(_name, None)


@pytest.fixture
def qtbot(qtbot: Any) -> Any:
    """pytest-qt's ``qtbot``, its waits given :data:`QT_WAIT_MS` unless a test says."""
    for name in ("waitUntil", "waitSignal", "waitSignals", "waitCallback"):
        setattr(qtbot, name, _waiting_longer(getattr(qtbot, name)))
    return qtbot


def _waiting_longer(wait: Callable[..., Any]) -> Callable[..., Any]:
    def waiting(*args: Any, timeout: int = QT_WAIT_MS, **kwargs: Any) -> Any:
        return wait(*args, timeout=timeout, **kwargs)

    return waiting


def _reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    from ophthai_desktop.core.storage.database import _normalise_url

    engine = create_engine(_normalise_url(url))
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, or the test PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{(tmp_path / 'test.db').as_posix()}"
    if not POSTGRES_URL:
        pytest.skip("OPHTHAI_TEST_DATABASE_URL is not set")
    _reset_postgres(POSTGRES_URL)
    return POSTGRES_URL


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", _env_file=None, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings on a temporary data folder with the default SQLite database."""
    return make_settings(tmp_path)


@pytest.fixture
def app_services(tmp_path: Path, db_url: str) -> Iterator[Application]:
    """The core services on a fresh database (SQLite, and PostgreSQL when configured)."""
    application = build_application(make_settings(tmp_path, database_url=db_url))
    yield application
    application.close()


@pytest.fixture
def sqlite_services(settings: Settings) -> Iterator[Application]:
    """The core services on a fresh SQLite database only."""
    application = build_application(settings)
    yield application
    application.close()


@pytest.fixture
def actor() -> Actor:
    return Actor(who="test-clinician", via="gui")


@pytest.fixture
def model_looks_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A request's look at the model files (``InferenceEngine.confirm_installed``) is
    waited for to its end: on a loaded machine it can take longer than the second a
    request waits for it (the state as known answers then, the finding a moment later),
    which is not what a test of the finding asks."""
    from ophthai_desktop.core.inference import engine as engine_module

    monkeypatch.setattr(engine_module, "CONFIRM_WAIT_S", 60.0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight Qwen2.5-VL folder (~0.5 MB) that writes until its token cap;
    loads through the same code path as OctoMed-7B."""
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen25vl"))


@pytest.fixture(scope="session")
def tiny_thinking_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scripted model: ``<think>`` then ``~`` until closed, then ``<|im_end|>``."""
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny-qwen25vl-thinking"), scripted=True)


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model trained for seconds to answer ``TRAINED_OUTPUT`` for any image
    (run it with ``max_pixels=TRAINED_MAX_PIXELS``); see ``train_tiny_answerer``."""
    return train_tiny_answerer(tmp_path_factory.mktemp("tiny-qwen25vl-trained"))
