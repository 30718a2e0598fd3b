"""The settings dialog's wiring: validate, save to the user's ``settings.env``, and
apply to the running application what can change without a restart.

Design: the user's settings live in one ``.env``-format file,
``<user config dir>/OphthAI/settings.env``, the same names the environment and the
project ``.env`` use (``OPHTHAI_...``), so ``ophthai serve`` and the desktop read the same
file once ``Settings`` lists it among its env files. Only the settings changed in the
dialog are written (the file's other lines stay), so the others keep following the
environment, ``.env`` and the defaults. The running application gets a
validated copy of its Settings; the watch folder, the demo mode, the theme, minimise to
tray and the audit-trail name apply at once; the data folder and the API server are
read at start and say "(restart needed)" in the dialog (and the window says so when an
API setting is saved); the model settings apply from the next analysis or load.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from PySide6.QtCore import QObject, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QFont, QGuiApplication

from ophthai_desktop.core.errors import InvalidInput
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.settings import (
    USER_SETTINGS_FILE,
    Settings,
    check_api_binding,
    set_in_environment,
)
from ophthai_desktop.ui.context import GuiContext, clinician_name
from ophthai_desktop.ui.messages import describe
from ophthai_desktop.ui.theme import apply_theme, follow_application_font
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.settings_dialog import SettingsDialog

log = logging.getLogger(__name__)


#: The dialog's fields as the clinician reads them in messages.
LABELS = {
    "user_name": "Name in the audit trail",
    "theme": "Theme",
    "minimize_to_tray": "Minimise to tray",
    "watch_folder_enabled": "Watch folder on/off",
    "watch_folder_path": "Watch folder",
    "watch_demo_mode": "Demo mode",
    "api_enabled": "API server on/off",
    "api_host": "API host",
    "api_port": "API port",
    "api_token": "API token",
    "cors_origins": "CORS origins",
    "model_id": "Model id",
    "model_path": "Model folder",
    "device": "Device",
    "quantization": "Quantization",
    "max_new_tokens": "Max new tokens",
    "thinking_budget": "Thinking budget",
    "max_pixels": "Max pixels per image",
    "load_model_on_startup": "Load the model at start",
}
EDITABLE = tuple(LABELS)
#: Applied to the running application at once (the rest wait for a restart).
LIVE = frozenset(
    {"user_name", "theme", "minimize_to_tray", "watch_folder_enabled", "watch_folder_path",
     "watch_demo_mode", "load_model_on_startup"}
)  # fmt: skip
#: Taken by the API server when it next starts (the dialog's "restart needed" group).
AT_SERVER_START = frozenset({"api_enabled", "api_host", "api_port", "api_token", "cors_origins"})
#: The settings file's permissions: read and write for its owner only.
SETTINGS_FILE_MODE = 0o600
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def settings_file() -> Path:
    """The user's settings file, which :class:`Settings` reads too."""
    return USER_SETTINGS_FILE


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

    Runs on a pool thread.
    """
    keys = {f"OPHTHAI_{name.upper()}" for name in values}
    kept: list[str] = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
            if key not in keys:
                kept.append(line)
    if not kept:
        kept = ["# OphthAI Desktop settings, written by Tools > Settings."]
    lines = kept + [f"OPHTHAI_{name.upper()}={env_text(value)}" for name, value in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".env.tmp")
    # Owner-only, like ~/.pgpass: the file can hold the API token, which opens the
    # patient records to the network. An older file's looser mode goes with the rename.
    # (On Windows the mode only sets the read-only flag; the user's profile folder is
    # what keeps it private there.)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)  # Windows
    fd = os.open(tmp, flags, SETTINGS_FILE_MODE)
    with open(fd, "w", encoding="utf-8") as out:
        os.chmod(tmp, SETTINGS_FILE_MODE)  # a leftover .tmp kept its old mode
        out.write("\n".join(lines) + "\n")
    tmp.replace(path)


def validate(current: Settings, changes: Mapping[str, Any]) -> Settings:
    """The running settings with the clinician's ``changes`` applied, checked as at
    start.

    The dialog's own rules apply to the fields changed, and the rules between fields
    when one of theirs changed: a value from the environment that the dialog would not
    take does not stop the clinician saving another setting.

    Raises:
        InvalidInput: a value is not acceptable; ``field`` names it.
    """
    changed = changes.keys()
    if "device" in changed and not DEVICE_PATTERN.match(str(changes["device"] or "")):
        raise InvalidInput("use auto, cpu, mps, cuda or cuda:N", field="device")
    for origin in changes.get("cors_origins") or ():
        if not re.match(r"^https?://[^\s/]+$", origin):
            raise InvalidInput(
                f"{origin!r} is not an origin such as http://localhost:3000", field="cors_origins"
            )
    if "api_host" in changed and not (changes["api_host"] or "").strip():
        raise InvalidInput("give a host, such as 127.0.0.1", field="api_host")
    merged = {**current.model_dump(), **changes}
    if changed & {"model_id", "model_path"} and not (merged["model_id"] or "").strip():
        if not merged["model_path"]:
            raise InvalidInput("give a model id or a model folder", field="model_id")
        merged["model_id"] = current.model_id  # unused while a folder is given
    try:
        updated = Settings.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else None
        raise InvalidInput(error["msg"], field=field) from exc
    if changed & {"api_host", "api_token", "cors_origins"}:
        check_api_binding(updated.api_host, updated.api_token, updated.cors_origins)
    if changed & {"watch_folder_enabled", "watch_folder_path"} and updated.watch_folder_enabled:
        check_watch_folder(updated.resolved_watch_folder)
    return updated


def check_watch_folder(folder: Path) -> None:
    """Make sure the watch folder is there (created, as the watch folder would be) and
    writable: files are moved out of it once taken in. Said in the dialog, not found
    later as "Watch folder: error" with the reason only in the log.

    Raises:
        InvalidInput: ``field`` is ``watch_folder_path``.
    """
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(
            f"{folder} is a file, not a folder; choose a folder (it is created if missing)",
            field="watch_folder_path",
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(
            f"{folder} cannot be created ({exc.strerror or exc}); choose another folder",
            field="watch_folder_path",
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidInput(
            f"OphthAI cannot write to {folder} (it moves the files it takes in out of "
            "it); choose another folder or change its permissions",
            field="watch_folder_path",
        )


def message_for(exc: InvalidInput) -> str:
    return describe(exc, LABELS)


class SettingsController(QObject):
    """Opens the settings dialog, saves what it returns and applies it.

    Signals:
        settings_saved(object): the new Settings were written and applied.
        watcher_applied(): the watch folder was stopped or (re)started as the new
            settings say.
    """

    settings_saved = Signal(object)
    watcher_applied = Signal()

    def __init__(
        self,
        ctx: GuiContext,
        window: MainWindow,
        *,
        path: Callable[[], Path] | None = None,
    ) -> None:
        super().__init__(window)
        self._ctx = ctx
        self._app = ctx.application
        self._window = window
        self._path = path
        self.dialog: SettingsDialog | None = None

    def settings_path(self) -> Path:
        """Where the settings are saved (:func:`settings_file` unless told)."""
        return self._path() if self._path is not None else settings_file()

    def start(self) -> None:
        """Apply the look the settings ask for (the light one is already there), its
        text sized for the application font, and follow that font when the desktop's
        setting changes."""
        if self._app.settings.theme != "light":
            apply_theme(self._app.settings.theme)
        else:
            follow_application_font("light")
        app = QGuiApplication.instance()
        if isinstance(app, QGuiApplication):
            # Queued: once Qt has handed every widget the new font, not in the middle.
            app.fontChanged.connect(self._on_app_font_changed, Qt.ConnectionType.QueuedConnection)

    @Slot(QFont)
    def _on_app_font_changed(self, _font: QFont) -> None:
        follow_application_font()

    # Actions --------------------------------------------------------------------------

    @Slot()
    def open_dialog(self) -> None:
        if self.dialog is not None:
            self.dialog.raise_()
            self.dialog.activateWindow()
            return
        dialog = SettingsDialog(self._window)
        path = self.settings_path()
        dialog.set_settings(self._app.settings, saved_to=path if path.is_file() else None)
        dialog.save_requested.connect(self._on_dialog_save_requested)
        dialog.finished.connect(self._on_dialog_finished)
        self.dialog = dialog
        dialog.open()

    @Slot()
    def open_watch_folder(self) -> None:
        """Show the watch folder in the file manager (created when missing)."""
        folder = self._app.settings.resolved_watch_folder.expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._window.banner.show_message(
                f"The watch folder could not be created: {exc.strerror or exc}", "error"
            )
            return
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self._window.banner.show_message(f"No file manager opened {folder}", "warning")

    # Slots ----------------------------------------------------------------------------

    @Slot(int)
    def _on_dialog_finished(self, _result: int) -> None:
        if self.dialog is not None:
            self.dialog.deleteLater()
        self.dialog = None

    @Slot(dict)
    def _on_dialog_save_requested(self, changes: dict[str, Any]) -> None:
        """Save what the clinician changed, and only that: a setting left alone keeps
        following its default, the environment and ``.env``; the file keeps its other
        lines."""
        dialog = self.dialog
        if dialog is None:
            return
        changes = {name: changes[name] for name in EDITABLE if name in changes}
        current = self._app.settings
        try:
            updated = validate(current, changes)
        except InvalidInput as exc:
            dialog.show_error(message_for(exc), exc.field)
            return
        stored = {
            name: getattr(updated, name)
            for name in changes
            if getattr(updated, name) != getattr(current, name)
        }
        if not stored:
            dialog.accept()
            return
        path = self.settings_path()
        overridden = [env for name in stored if (env := set_in_environment(name))]
        dialog.buttons.setEnabled(False)

        def done(_result: object) -> None:
            if self.dialog is not None:
                self.dialog.buttons.setEnabled(True)
                self.dialog.accept()
            log.info("settings saved to %s: %s", path, ", ".join(sorted(stored)))
            self.apply(updated)
            notes = []
            # The dialog said "(restart needed)"; once it closes, the window says it.
            waiting = [LABELS[name] for name in stored if name in AT_SERVER_START]
            if waiting:
                notes.append(
                    f"{', '.join(waiting)}: the API server runs as it was until it is "
                    "restarted (Tools → API server…) or OphthAI starts again."
                )
            if overridden:
                notes.append(
                    f"{', '.join(overridden)} "
                    f"{'is' if len(overridden) == 1 else 'are'} set in the environment, "
                    "which wins over the settings file: the change applies now, but not "
                    "after OphthAI starts again."
                )
            if notes:
                self._window.banner.show_message("Settings saved. " + " ".join(notes), "warning")

        def failed(exc: BaseException) -> None:
            if self.dialog is not None:
                self.dialog.buttons.setEnabled(True)
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                self.dialog.show_error(f"The settings could not be saved to {path}: {reason}")

        self._ctx.tasks.submit(lambda: write_settings_file(path, stored), done, failed)

    def apply(self, updated: Settings) -> None:
        """Make the running application use ``updated`` where it can without a
        restart."""
        app = self._app
        previous = app.settings
        app.settings = updated
        app.watcher.settings = updated
        app.ingest.demo_mode = updated.watch_demo_mode
        if updated.user_name != previous.user_name:
            self._ctx.actor = Actor(who=clinician_name(updated.user_name), via="gui")
        if updated.theme != previous.theme:
            apply_theme(updated.theme)
        watch_changed = (
            updated.watch_folder_enabled != previous.watch_folder_enabled
            or updated.resolved_watch_folder != previous.resolved_watch_folder
        )
        if watch_changed:
            self._restart_watcher(updated.watch_folder_enabled)
        # The engine waits for a running analysis before it takes them: a pool thread.
        engine = app.engine
        self._ctx.slow_tasks.submit(lambda: engine.update_settings(updated), lambda _r: None)
        self.settings_saved.emit(updated)

    def _restart_watcher(self, enabled: bool) -> None:
        watcher = self._app.watcher
        start = self._app.start_watcher

        def restart() -> None:  # a pool thread
            watcher.stop()
            if enabled:
                start()

        self._ctx.slow_tasks.submit(restart, lambda _r: self.watcher_applied.emit())
