"""Writing the user's settings file (``settings.env``, :data:`USER_SETTINGS_FILE`): the
Settings dialog's OK, and the watch folder's Pause or Resume, whoever made it (the
window, the tray, an API client of the window or of ``ophthai serve``), which is kept
there so that the next start is paused until resumed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ophthai_desktop.core.settings import set_in_environment
from ophthai_desktop.core.storage.private import replace_private_file

log = logging.getLogger(__name__)

#: One writer of the settings file at a time: the dialog's OK and a Pause or Resume
#: each read the file and replace it whole, on two threads.
_WRITING = threading.Lock()


class SettingsFileNotText(ValueError):
    """The settings file is there but is not UTF-8 text (an editor saved it in the
    system's code page): it is left as it is, since rewriting it would lose its lines."""


def env_text(value: Any) -> str:
    """``value`` as a double-quoted ``.env`` value (python-dotenv's escapes)."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | tuple):
        text = ",".join(str(v) for v in value)
    else:
        text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_settings_file(path: Path, values: Mapping[str, Any]) -> None:
    """Write ``values`` as ``OPHTHAI_<NAME>="..."`` lines, keeping the file's other lines.

    Runs on a pool thread (any thread but the GUI thread and the server's loop).
    """
    with _WRITING:
        _write_settings_file(path, values)


def write_watch_folder_paused(path: Path, paused: bool) -> None:
    """Keep the watch folder's pause (``OPHTHAI_WATCH_FOLDER_PAUSED``) in the file at
    ``path``, as :func:`write_settings_file` does."""
    write_settings_file(path, {"watch_folder_paused": paused})


def _write_settings_file(path: Path, values: Mapping[str, Any]) -> None:
    keys = {f"OPHTHAI_{name.upper()}" for name in values}
    kept: list[str] = []
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SettingsFileNotText(
                "the file is not UTF-8 text; save it as UTF-8 (an editor's Save As offers "
                "the encoding)"
            ) from None
        for line in text.splitlines():
            key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
            if key not in keys:
                kept.append(line)
    if not kept:
        kept = ["# OphthAI Desktop settings, written by Tools > Settings."]
    lines = kept + [f"OPHTHAI_{name.upper()}={env_text(value)}" for name, value in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Owner-only, like ~/.pgpass: the file can hold the API token, which opens the
    # patient records to the network. An older file's looser mode goes with the rename.
    # (On Windows the mode only sets the read-only flag; the user's profile folder is
    # what keeps it private there.) Replaced whole: on a full disk the old file stays.
    replace_private_file(path, ("\n".join(lines) + "\n").encode("utf-8"))


class PauseKeeper:
    """Keeps the last Pause or Resume an API client made of ``ophthai serve``'s watch
    folder in the settings file at ``path``, so that the next ``ophthai serve`` starts
    paused until resumed (the window keeps its own, and its clients', through its
    settings controller).

    Each is written on a thread of its own, never on the server's loop (the home folder
    can be on a share that does not answer), one write at a time, in the order they
    were made: one asked for while a write runs follows it, with the latest value.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._wanted: bool | None = None  # the last asked for, None: nothing asked
        self._writer: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()

    def keep(self, paused: bool) -> None:
        """An API client paused (or resumed) the watch folder: write it. Returns at
        once (any thread: an API call's control thread)."""
        if env := set_in_environment("watch_folder_paused"):
            log.warning("%s is set in the environment, which wins at the next start", env)
        with self._lock:
            self._wanted = paused
            if self._writer is not None:
                return  # the running write writes it next
            self._idle.clear()
            self._writer = threading.Thread(target=self._write, name="settings-writer", daemon=True)
            writer = self._writer
        try:
            writer.start()
        except RuntimeError as exc:  # no thread to be had now: the next one tries again
            with self._lock:
                self._writer = None
                self._idle.set()
            what = "pause" if paused else "resume"
            log.warning("the watch folder's %s could not be saved to %s: %s", what, self._path, exc)

    def wait_written(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the writes asked for (at exit); whether they
        are done."""
        return self._idle.wait(timeout_s)

    def _write(self) -> None:
        """The writer thread: write the latest value until no other was asked for."""
        written: bool | None = None
        try:
            while True:
                with self._lock:  # checked and let go at once: keep() sees no writer after
                    paused = self._wanted
                    if paused is None or paused == written:
                        self._writer = None
                        self._idle.set()
                        return
                try:
                    write_watch_folder_paused(self._path, paused)
                except (OSError, SettingsFileNotText) as exc:
                    log.warning(
                        "the watch folder's %s could not be saved to %s: %s",
                        "pause" if paused else "resume",
                        self._path,
                        getattr(exc, "strerror", None) or exc,
                    )
                written = paused
        except BaseException:  # whatever ended it, the next Pause or Resume starts a writer
            with self._lock:
                self._writer = None
                self._idle.set()
            raise
