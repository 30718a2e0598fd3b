"""The settings file's watch-folder pause as ``ophthai serve`` keeps a client's."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ophthai_desktop.core import settings_file
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.core.settings_file import PauseKeeper


def test_a_pause_and_a_resume_made_at_once_are_kept_in_that_order(tmp_path: Path) -> None:
    path = tmp_path / "config" / "settings.env"
    keeper = PauseKeeper(path)
    with settings_file._WRITING:  # the file's first write held up (a slow disk)
        keeper.keep(True)
        keeper.keep(False)
        assert not keeper.wait_written(0.1)
    assert keeper.wait_written(10)

    assert 'OPHTHAI_WATCH_FOLDER_PAUSED="false"' in path.read_text()
    read = Settings(_env_file=path, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    assert read.watch_folder_paused is False


def test_nothing_asked_is_nothing_to_wait_for(tmp_path: Path) -> None:
    keeper = PauseKeeper(tmp_path / "settings.env")
    assert keeper.wait_written(0)
    assert not (tmp_path / "settings.env").exists()


def test_a_write_whose_thread_could_not_start_does_not_stop_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No thread could be started for a write (the process at its limit): the keeper
    went on believing one ran, so no later Pause or Resume was ever written, and the
    exit waited for it in vain."""
    path = tmp_path / "settings.env"
    keeper = PauseKeeper(path)
    start = threading.Thread.start

    def no_thread(thread: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    with monkeypatch.context() as limit:
        limit.setattr(threading.Thread, "start", no_thread)
        keeper.keep(True)  # the pause stands; only its saving failed (logged)
    assert threading.Thread.start is start
    assert keeper.wait_written(0)

    keeper.keep(False)
    assert keeper.wait_written(10)
    assert 'OPHTHAI_WATCH_FOLDER_PAUSED="false"' in path.read_text()


def test_a_settings_file_that_is_no_utf8_text_is_said_and_the_next_write_still_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file saved in another encoding while ``ophthai serve`` runs (an editor's
    code page): the writer thread died of the UnicodeDecodeError, the keeper went on
    believing it ran, and no later Pause or Resume was written (the exit waited 5 s)."""
    path = tmp_path / "settings.env"
    path.write_bytes(b'OPHTHAI_API_HOST="127.0.0.1"\n# R\xe9glages\n')
    keeper = PauseKeeper(path)

    keeper.keep(True)
    assert keeper.wait_written(10)
    assert "could not be saved" in caplog.text
    assert "not UTF-8 text; save it as UTF-8" in caplog.text

    path.write_text('OPHTHAI_API_HOST="127.0.0.1"\n', encoding="utf-8")  # saved again as UTF-8
    keeper.keep(False)
    assert keeper.wait_written(10)
    assert 'OPHTHAI_WATCH_FOLDER_PAUSED="false"' in path.read_text()
