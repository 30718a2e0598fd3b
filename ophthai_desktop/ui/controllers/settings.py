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

What OK checks on the disk and the network (the watch folder, which can be on a share
that does not answer, and whether the API port is free) runs off the GUI thread and is
given up after :data:`CHECK_TIMEOUT_S`; the dialog says "Checking…" meanwhile. A save is
all or nothing: the folder the check creates is removed again (while empty) when the
settings are then not saved.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import socket
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import TypeAdapter, ValidationError
from PySide6.QtCore import QObject, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QFont, QGuiApplication

from ophthai_desktop.core.errors import NO_ROOM_ERRNOS, InvalidInput
from ophthai_desktop.core.inference.engine import ModelState
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.settings import (
    DEVICE_PATTERN,
    USER_SETTINGS_FILE,
    Settings,
    check_api_binding,
    set_in_environment,
)
from ophthai_desktop.core.settings_file import (
    SettingsFileNotText,
    write_settings_file,
    write_watch_folder_paused,
)
from ophthai_desktop.core.watcher import missing_parent_message
from ophthai_desktop.ui.context import ApiState, GuiContext, clinician_name
from ophthai_desktop.ui.controllers.watch_folder import WatchFolderController
from ophthai_desktop.ui.messages import describe
from ophthai_desktop.ui.theme import apply_theme, follow_application_font
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.settings_dialog import SettingsDialog

log = logging.getLogger(__name__)

T = TypeVar("T")


#: The dialog's fields as the clinician reads them in messages.
LABELS = {
    "user_name": "Name in the audit trail",
    "theme": "Theme",
    "minimize_to_tray": "Minimise to tray",
    "watch_folder_enabled": "Watch folder on/off",
    "watch_folder_path": "Watch folder",
    "watch_demo_mode": "Demo mode",
    "watch_folder_require_mount": "Watch only while a share is mounted",
    "watch_use_polling": "Poll the folder",
    "watch_poll_seconds": "Polling interval",
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
#: The watch folder's settings that its watcher reads when it starts: a change stops it
#: and starts it again, as a new folder does.
WATCHER_SETUP = ("watch_folder_enabled", "watch_folder_path", "watch_folder_require_mount",
                 "watch_use_polling", "watch_poll_seconds")  # fmt: skip
#: Taken by the API server when it next starts (the dialog's "restart needed" group).
AT_SERVER_START = frozenset({"api_enabled", "api_host", "api_port", "api_token", "cors_origins"})
#: Taken by the engine at its next load: a model loaded (or loading) keeps what it has.
AT_NEXT_LOAD = frozenset({"model_id", "model_path", "device", "quantization"})
#: Model states in which a change of AT_NEXT_LOAD waits for the next load.
_MODEL_IN_MEMORY = frozenset({ModelState.LOADING, ModelState.READY})
#: How long OK's checks on the disk and the network (the watch folder, the API port)
#: may take before the dialog says they did not answer: a share that does not respond
#: can hold a file-system call for minutes.
CHECK_TIMEOUT_S = 5.0


def settings_file() -> Path:
    """The user's settings file, which :class:`Settings` reads too."""
    return USER_SETTINGS_FILE


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
    device = str(changes.get("device") or "").strip().lower()  # as the engine reads it
    if "device" in changed and not DEVICE_PATTERN.fullmatch(device):
        raise InvalidInput("use auto, cpu, mps, cuda or cuda:N", field="device")
    for origin in changes.get("cors_origins") or ():
        if not re.fullmatch(r"https?://[^\s/]+", origin):
            raise InvalidInput(
                f"{origin!r} is not an origin such as http://localhost:3000", field="cors_origins"
            )
    if "api_host" in changed and not (changes["api_host"] or "").strip():
        raise InvalidInput("give a host, such as 127.0.0.1", field="api_host")
    merged = {**current.model_dump(), **changes}
    if (
        changed & {"watch_folder_require_mount", "watch_folder_path"}
        and merged["watch_folder_require_mount"]
        and not merged["watch_folder_path"]
    ):
        raise InvalidInput(
            "choose the folder the share is mounted on: the default watch folder, in the "
            "data folder, is not a share's mount point (or untick Watch only while a share "
            "is mounted)",
            field="watch_folder_path",
        )
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
    return updated


@dataclass(frozen=True)
class SaveChecks:
    """What OK checks on the disk and the network before saving (None: nothing)."""

    #: The watch folder to check and create.
    folder: Path | None = None
    #: Whether a missing watch folder is created (not a share's mount point, which the
    #: watcher never makes either).
    create_folder: bool = True
    #: The API server's new address, to see that nobody else listens there.
    address: tuple[str, int] | None = None

    def __bool__(self) -> bool:
        return self.folder is not None or self.address is not None

    @property
    def what(self) -> str:
        """How the dialog names what is being checked."""
        if self.folder is not None and self.address is not None:
            return "the folder and the port"
        return "the folder" if self.folder is not None else "the port"


def checks_at_save(
    updated: Settings, changed: Collection[str], running_port: int | None
) -> SaveChecks:
    """What must be checked before ``updated`` is saved, given the settings ``changed``
    and the port the running API server listens on (None when none runs): that port is
    the server's own, free again when it restarts, not in use by someone else."""
    folder = None
    if {"watch_folder_enabled", "watch_folder_path", "watch_folder_require_mount"} & set(
        changed
    ) and (updated.watch_folder_enabled):
        folder = updated.resolved_watch_folder
    address = None
    if (
        {"api_enabled", "api_host", "api_port"} & set(changed)
        and updated.api_enabled
        and updated.api_port != 0  # any free port, chosen at start
        and updated.api_port != running_port
    ):
        address = (updated.api_host, updated.api_port)
    return SaveChecks(
        folder=folder,
        create_folder=not updated.watch_folder_require_mount,
        address=address,
    )


def check_watch_folder(folder: Path, *, create: bool = True) -> list[Path]:
    """Make sure the watch folder is there (created, as the watch folder would be) and
    writable: files are moved out of it once taken in. Said in the dialog, not found
    later as "Watch folder: error" with the reason only in the log. Runs off the GUI
    thread (the folder can be on a share that does not answer).

    Without ``create`` (a share's mount point, watched only while the share is
    mounted), a missing folder is refused rather than made, and one with no share
    mounted on it yet is taken as it is: whether the share can be written is known once
    it is mounted. Only the folder itself is made, never the folders above it: a share
    not mounted would have its mount point made, a local folder nobody copies into, and
    the default folder's data folder is made owner-only at start, never by the umask.

    Returns:
        The folders it created, outermost first (for :func:`remove_created` when the
        settings are then not saved).

    Raises:
        InvalidInput: ``field`` is ``watch_folder_path``.
    """
    if folder.exists() and not folder.is_dir():
        raise InvalidInput(
            f"{folder} is a file, not a folder; choose a folder (it is created if missing)",
            field="watch_folder_path",
        )
    if not create:
        if not folder.is_dir():
            raise InvalidInput(
                f"{folder} does not exist; a share's mount point is not created (nothing "
                "is made where the share is not mounted): choose the folder the share is "
                "mounted on",
                field="watch_folder_path",
            )
        if not os.path.ismount(folder.resolve()):
            return []
    created = [] if folder.exists() else [folder]
    try:
        folder.mkdir(exist_ok=True)
    except FileNotFoundError as exc:
        raise InvalidInput(
            f"{folder} cannot be created: {missing_parent_message(folder)}; connect it, "
            "or choose another folder",
            field="watch_folder_path",
        ) from exc
    except OSError as exc:
        raise InvalidInput(
            f"{folder} cannot be created ({exc.strerror or exc}); choose another folder",
            field="watch_folder_path",
        ) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        remove_created(created)
        raise InvalidInput(
            f"OphthAI cannot write to {folder} (it moves the files it takes in out of "
            "it); choose another folder or change its permissions",
            field="watch_folder_path",
        )
    return created


def remove_created(folders: Sequence[Path]) -> None:
    """Remove the folders a check created (outermost first, as
    :func:`check_watch_folder` returns them), innermost first, while they are empty: a
    folder something was put in meanwhile stays, with those around it."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            return


def check_port(host: str, port: int) -> None:
    """Check that the API server could listen on ``host``:``port`` now, by binding a
    socket there for a moment, as the server does (address reuse on POSIX, as asyncio
    sets it: a port left in TIME_WAIT is not in use).

    Raises:
        InvalidInput: The port is in use (``api_port``), or the host is not an address
            of this computer (``api_host``).
    """
    try:
        entries = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise InvalidInput(
            f"{host} is not an address of this computer (it could not be looked up)",
            field="api_host",
        ) from exc
    for family, kind, proto, _name, address in entries:
        try:
            with socket.socket(family, kind, proto) as probe:
                if os.name != "nt":  # on Windows it would let two servers share a port
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                probe.bind(address)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, getattr(errno, "WSAEADDRINUSE", -1)):
                raise InvalidInput(
                    f"port {port} is already in use on {host} by another program; choose "
                    "another port, or stop that program",
                    field="api_port",
                ) from exc
            if exc.errno == errno.EACCES:
                raise InvalidInput(
                    f"port {port} needs administrator rights; choose a port above 1023",
                    field="api_port",
                ) from exc
            raise InvalidInput(
                f"the API server cannot listen on {host} ({exc.strerror or exc}); "
                "choose an address of this computer, such as 127.0.0.1",
                field="api_host",
            ) from exc


class NotAnswered(Exception):
    """A call on the disk or the network was given up: it did not return in time."""


def call_within(
    fn: Callable[[], T], timeout_s: float, *, too_late: Callable[[T], None] | None = None
) -> T:
    """Task-pool thread: ``fn()``, on a thread of its own, given up after ``timeout_s``.

    The pool's thread is not held by a share that does not answer, and quitting does not
    wait for it. What a call given up returns later goes to ``too_late`` (on its thread).

    Raises:
        NotAnswered: ``fn`` did not return in time.
    """
    lock = threading.Lock()
    outcome: list[tuple[bool, Any]] = []
    given_up = False

    def call() -> None:
        try:
            result: tuple[bool, Any] = (True, fn())
        except BaseException as exc:  # raised again on the waiting thread
            result = (False, exc)
        with lock:
            if not given_up:
                outcome.append(result)
                return
        if result[0] and too_late is not None:
            too_late(result[1])

    worker = threading.Thread(target=call, name="settings-check", daemon=True)
    worker.start()
    worker.join(timeout_s)
    with lock:
        if not outcome:
            given_up = True
            raise NotAnswered
    returned, value = outcome[0]
    if not returned:
        raise value
    return cast(T, value)


def run_checks(checks: SaveChecks, timeout_s: float | None = None) -> list[Path]:
    """Task-pool thread: make the ``checks``, given up after ``timeout_s``
    (:data:`CHECK_TIMEOUT_S` unless given). A check given up that answers later removes
    the folder it created: nothing is saved with it.

    Returns:
        The folders created (see :func:`check_watch_folder`).

    Raises:
        InvalidInput: A check failed, or did not answer in time.
    """
    if timeout_s is None:
        timeout_s = CHECK_TIMEOUT_S
    stage = ["folder" if checks.folder is not None else "port"]

    def check() -> list[Path]:
        created: list[Path] = []
        if checks.folder is not None:
            created = check_watch_folder(checks.folder, create=checks.create_folder)
        if checks.address is not None:
            stage[0] = "port"
            try:
                check_port(*checks.address)
            except BaseException:
                remove_created(created)
                raise
        return created

    try:
        return call_within(check, timeout_s, too_late=remove_created)
    except NotAnswered:
        if stage[0] == "folder":
            raise InvalidInput(
                f"{checks.folder} did not answer within {timeout_s:g} s (a network share "
                "that is not reachable?); nothing was saved. Check the share and press "
                "OK again, or choose another folder",
                field="watch_folder_path",
            ) from None
        host, port = checks.address or ("", 0)
        raise InvalidInput(
            f"whether port {port} is free on {host} could not be checked within "
            f"{timeout_s:g} s; nothing was saved. Press OK again",
            field="api_port",
        ) from None


def _next_start_by(env: str) -> str:
    """What the environment variable ``env`` makes of the watch folder at the next
    start, read as the settings read it."""
    try:
        paused = TypeAdapter(bool).validate_python(os.environ.get(env, ""))
    except ValidationError:
        return f"the watch folder follows {env}"
    return "the watch folder starts paused" if paused else "the watch folder is watched"


def save_settings(path: Path, values: Mapping[str, Any], created: Sequence[Path]) -> None:
    """Task-pool thread: write the settings file; when it cannot be written, remove the
    folders OK's check created for these settings (all or nothing)."""
    try:
        write_settings_file(path, values)
    except BaseException:
        remove_created(created)
        raise


def not_saved_message(path: Path, exc: BaseException) -> str:
    """What the dialog says when the settings file could not be written: the settings
    saved before are kept (the file is replaced whole or not at all)."""
    kept = "The settings saved before are kept; nothing was changed."
    if isinstance(exc, OSError) and exc.errno in NO_ROOM_ERRNOS:
        return f"The disk is full: free space on it, then press OK again. {kept} ({path})"
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
    return f"The settings could not be saved to {path}: {reason}. {kept}"


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
        watch_folder: WatchFolderController,
        *,
        path: Callable[[], Path] | None = None,
        tray_available: bool = True,
    ) -> None:
        super().__init__(window)
        self._ctx = ctx
        self._tray_available = tray_available
        self._watch_folder = watch_folder
        watch_folder.applied.connect(self.watcher_applied)
        self._app = ctx.application
        self._window = window
        self._path = path
        self.dialog: SettingsDialog | None = None
        #: The API server as last reported (its port is its own, not "in use").
        self.api_state: ApiState | None = None
        #: Counts OK's checks: one that answers for a dialog since closed, or after the
        #: fields changed, is not saved.
        self._checks = 0
        #: A Pause or Resume is being written to the settings file: the next waits for
        #: it (two pool threads could write them in either order, the file left saying
        #: the one clicked first).
        self._writing_paused = False
        #: A Pause or Resume not known to be written yet (None: none): written at quit
        #: if its write was dropped with the pool's queue or had not begun.
        self._paused_unsaved: bool | None = None

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
        dialog.set_tray_available(self._tray_available)
        path = self.settings_path()
        dialog.set_settings(self._app.settings, saved_to=path if path.is_file() else None)
        dialog.save_requested.connect(self._on_dialog_save_requested)
        dialog.finished.connect(self._on_dialog_finished)
        self.dialog = dialog
        dialog.open()

    @Slot()
    def open_watch_folder(self) -> None:
        """Show the watch folder in the file manager (created when missing, off the GUI
        thread: it can be on a share that does not answer)."""
        settings = self._app.settings
        folder = settings.resolved_watch_folder.expanduser()
        banner = self._window.banner

        def make() -> None:
            # The folder itself only, never those above it: a share not mounted would
            # have its mount point made (a local folder nobody copies into), and the
            # default folder's data folder is made owner-only at start, never by the
            # umask (0755).
            folder.mkdir(exist_ok=True)

        def made(_result: object) -> None:
            if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
                banner.show_message(f"No file manager opened {folder}", "warning")

        def not_made(exc: BaseException) -> None:
            if isinstance(exc, NotAnswered):
                reason = f"it did not answer within {CHECK_TIMEOUT_S:g} s"
            elif isinstance(exc, FileNotFoundError):  # the folder above it
                reason = missing_parent_message(folder)
            else:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            banner.show_message(f"The watch folder could not be created: {reason}", "error")

        timeout_s = CHECK_TIMEOUT_S
        self._ctx.tasks.submit(lambda: call_within(make, timeout_s), made, not_made)

    # Slots ----------------------------------------------------------------------------

    @Slot(object)
    def show_api_state(self, state: ApiState) -> None:
        """The API server's state, whoever reported it."""
        self.api_state = state

    def running_port(self) -> int | None:
        """The port the API server listens on now; None when it does not run."""
        state = self.api_state
        if state is None or not state.enabled or not state.url:
            return None
        try:
            return urlsplit(state.url).port
        except ValueError:
            return None

    @Slot(int)
    def _on_dialog_finished(self, _result: int) -> None:
        if self.dialog is not None:
            self.dialog.deleteLater()
        self.dialog = None
        self._checks += 1  # a check still running is not saved

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
        checks = checks_at_save(updated, stored, self.running_port())
        if not checks:
            self._save(dialog, updated, stored, [])
            return
        self._checks += 1
        ticket = self._checks
        dialog.show_checking(f"Checking {checks.what}…")

        def checked(created: list[Path]) -> None:
            if ticket != self._checks or self.dialog is not dialog:  # closed meanwhile
                self._ctx.tasks.submit(lambda: remove_created(created))
                return
            dialog.show_checking("")
            if {n: v for n, v in dialog.changed_values().items() if n in EDITABLE} != changes:
                self._ctx.tasks.submit(lambda: remove_created(created))
                dialog.show_error("The settings changed while they were checked; press OK again.")
                return
            self._save(dialog, updated, stored, created)

        def refused(exc: BaseException) -> None:
            if ticket != self._checks or self.dialog is not dialog:
                return
            dialog.show_checking("")
            if isinstance(exc, InvalidInput):
                dialog.show_error(message_for(exc), exc.field)
            else:
                dialog.show_error(describe(exc))

        self._ctx.tasks.submit(lambda: run_checks(checks), checked, refused)

    def _save(
        self,
        dialog: SettingsDialog,
        updated: Settings,
        stored: dict[str, Any],
        created: list[Path],
    ) -> None:
        """Write ``stored`` to the settings file (a pool thread), then apply ``updated``;
        the folders OK's check ``created`` are removed if the file cannot be written."""
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
            next_load = [LABELS[name] for name in stored if name in AT_NEXT_LOAD]
            if next_load and self._app.engine.status().state in _MODEL_IN_MEMORY:
                notes.append(
                    f"{', '.join(next_load)}: the model loaded keeps running as it was; "
                    "the new settings are used from its next load (AI → Unload model, "
                    "then load it again)."
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
                self.dialog.show_error(not_saved_message(path, exc))

        self._ctx.tasks.submit(lambda: save_settings(path, stored, created), done, failed)

    @Slot(bool)
    def remember_watch_folder_paused(self, paused: bool) -> None:
        """The clinician (menu or tray) or an API client paused or resumed the watch
        folder: keep it in the settings file, so that it starts paused until resumed (a
        pool thread writes)."""
        app = self._app
        if app.settings.watch_folder_paused == paused:
            return
        app.settings = app.settings.model_copy(update={"watch_folder_paused": paused})
        self._paused_unsaved = paused
        if env := set_in_environment("watch_folder_paused"):
            log.warning("%s is set in the environment, which wins at the next start", env)
            self._window.banner.show_message(
                f"The watch folder's {'pause' if paused else 'resume'} applies now, but "
                f"{env} is set in the environment, which wins over the settings file: "
                f"after OphthAI starts again {_next_start_by(env)}.",
                "warning",
            )
        self._write_watch_folder_paused()

    def _write_watch_folder_paused(self) -> None:
        """Write the clinician's pause as it is now, one write at a time: a Pause and a
        Resume clicked in quick succession are written in that order (a write asked for
        while one runs follows it, with the latest value)."""
        if self._writing_paused:
            return  # written again, as it is then, once this write ends
        app = self._app
        paused = app.settings.watch_folder_paused
        path = self.settings_path()
        what = "pause" if paused else "resume"
        self._writing_paused = True

        def written(_result: object) -> None:
            self._writing_paused = False
            if app.settings.watch_folder_paused != paused:  # changed meanwhile
                self._write_watch_folder_paused()
            else:
                self._paused_unsaved = None

        def failed(exc: BaseException) -> None:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            log.warning("the watch folder's %s could not be saved: %s", what, reason)
            # The reason after a colon: it may hold brackets of its own. This replaces
            # the banner that said the environment wins: said again, not contradicted.
            env = set_in_environment("watch_folder_paused")
            after = (
                f"{_next_start_by(env)}, as {env} set in the environment says"
                if env
                else "it follows the settings saved before"
            )
            self._window.banner.show_message(
                f"The watch folder's {what} applies now but could not be saved to {path}: "
                f"{reason}. After OphthAI starts again {after}.",
                "warning",
            )
            written(None)

        self._ctx.tasks.submit(lambda: write_watch_folder_paused(path, paused), written, failed)

    def save_watch_folder_paused_now(self) -> None:
        """At quit, the task pool stopped (its queue dropped, its results no longer
        delivered): a Pause or Resume whose write did not run, or is not known to have
        run, is written now, waiting at most :data:`CHECK_TIMEOUT_S` (a home folder on
        a share that does not answer)."""
        if self._paused_unsaved is None:
            return
        paused = self._app.settings.watch_folder_paused
        self._paused_unsaved = None
        path = self.settings_path()
        try:
            call_within(lambda: write_watch_folder_paused(path, paused), CHECK_TIMEOUT_S)
        except (OSError, SettingsFileNotText, NotAnswered) as exc:
            reason = (
                f"it did not answer within {CHECK_TIMEOUT_S:g} s"
                if isinstance(exc, NotAnswered)
                else (getattr(exc, "strerror", None) or exc)
            )
            what = "pause" if paused else "resume"
            log.warning("the watch folder's %s could not be saved: %s", what, reason)

    def apply(self, updated: Settings) -> None:
        """Make the running application use ``updated`` where it can without a
        restart."""
        app = self._app
        previous = app.settings
        # The dialog does not set the clinician's pause: one made since OK was pressed
        # (the tray's Pause, while the file was written) stands, rather than the value
        # read at OK, which restarted a new folder unpaused and left the file saying
        # paused.
        updated = updated.model_copy(update={"watch_folder_paused": previous.watch_folder_paused})
        app.settings = updated
        app.watcher.settings = updated
        app.ingest.demo_mode = updated.watch_demo_mode
        if updated.user_name != previous.user_name:
            self._ctx.actor = Actor(who=clinician_name(updated.user_name), via="gui")
        if updated.theme != previous.theme:
            apply_theme(updated.theme)
        watch_changed = updated.resolved_watch_folder != previous.resolved_watch_folder or any(
            getattr(updated, name) != getattr(previous, name) for name in WATCHER_SETUP
        )
        if watch_changed:
            self._watch_folder.follow(updated)
        # A running load or analysis goes on with the settings it started with and the
        # engine takes these as it ends, without waiting for it; with nothing loaded it
        # checks the model files now (maybe on a share): a pool thread.
        engine = app.engine
        self._ctx.slow_tasks.submit(lambda: engine.update_settings(updated), lambda _r: None)
        self.settings_saved.emit(updated)
