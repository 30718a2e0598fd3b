"""The desktop application's composition: the core services, the window and the
embedded API server, side by side in one process.

``ui`` and ``api`` do not import each other; this module is where they meet. The API
server starts on a background thread after the window is shown (importing FastAPI and
binding the port take a moment) and its address reaches the status bar as a plain
:class:`~ophthai_desktop.ui.context.ApiState`. Heavy modules (torch, transformers) are
imported only when the model loads, on the inference thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from ophthai_desktop.bootstrap import (
    Application,
    build_application,
    exit_now,
    tune_interpreter,
)
from ophthai_desktop.core.errors import OphthaiError, StorageError
from ophthai_desktop.core.log_safety import configure_logging
from ophthai_desktop.core.settings import (
    Settings,
    SettingsRefused,
    check_api_binding,
    read_settings,
)
from ophthai_desktop.core.storage.private import PRIVATE_FILE_MODE
from ophthai_desktop.data_folder import (
    INSTANCE_LOCK,
    SERVE_MARKER,
    held_by_serve,
    instance_lock,
    left_by_an_ended_process,
    stale_lock_refusal,
)
from ophthai_desktop.ui.context import ApiState
from ophthai_desktop.ui.controllers.server import ServerControl, ServerOptions
from ophthai_desktop.ui.priority import lower_current_thread_priority
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.single_instance import InstanceServer, ask_to_show
from ophthai_desktop.ui.window_state import fit_on_screen

if TYPE_CHECKING:
    from PySide6.QtCore import QLockFile
    from PySide6.QtWidgets import QApplication

    from ophthai_desktop.api.server import ApiServer

log = logging.getLogger(__name__)

APP_NAME = "OphthAI Desktop"
#: How often Python gets to run signal handlers while Qt's loop sleeps.
SIGNAL_POLL_MS = 250
#: When start-up is over and its objects can be frozen (gc.freeze).
SETTLE_AFTER_MS = 3000

#: How long a launch waits for a window on its data folder that does not answer (it is
#: closing: stopping a running analysis and the server can take ~15 s) to let go.
CLOSING_WAIT_S = 30.0
#: How long each wait for the lock lasts before the running window is asked again.
LOCK_SLICE_S = 1.0


@dataclasses.dataclass(frozen=True)
class DataFolderClaim:
    """What :func:`claim_data_folder` got: the lock held, or the running window shown,
    or why neither."""

    lock: QLockFile | None = None
    shown_elsewhere: bool = False
    refusal: str = ""


class Desktop:
    """Builds and runs everything behind one window.

    Args:
        settings: As for ``ophthai serve``; ``api_enabled`` decides about the server.
        application: Already built services (tests swap in an engine); built from
            ``settings`` when None.
        tray: Force the system tray on or off; None asks Qt whether there is one.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        application: Application | None = None,
        tray: bool | None = None,
    ) -> None:
        self.application = application or build_application(settings)
        self.session = GuiSession(
            self.application,
            tray=tray,
            server=ServerControl(start=self.start_api_server, stop=self.stop_api_server),
        )
        self.window = self.session.window
        self._server: ApiServer | None = None
        self._server_lock = threading.Lock()
        self._starter: threading.Thread | None = None
        self._closed = False
        #: Whether every service thread ended at shutdown (see Application.close).
        self.closed_cleanly = True

    @property
    def settings(self) -> Settings:
        """The application's settings as they are now (the Settings dialog replaces
        them), so that a server (re)started from the window uses what was saved."""
        return self.application.settings

    def start(self) -> None:
        """Show the window, start the worker and (in the background) the API server."""
        self.session.start()
        fit_on_screen(self.window)  # a first start on a small screen: 1440 x 900 overflows
        self.window.show()
        log.info("desktop window shown")
        if not self.settings.api_enabled:
            self.session.report_api_state(ApiState(enabled=False))
            return
        self.session.report_api_state(ApiState(enabled=True, starting=True))
        self._starter = threading.Thread(target=self._start_api, name="api-starter", daemon=True)
        self._starter.start()

    @property
    def api_url(self) -> str | None:
        with self._server_lock:
            return self._server.url if self._server is not None else None

    def _start_api(self) -> None:
        """Starter thread: import the API, bind, report the address (or the reason).

        The server's threads are started from here and inherit this thread's lowered
        priority, so under load the operating system runs the GUI thread first.
        """
        lower_current_thread_priority()
        settings = self.settings
        try:
            check_api_binding(settings.api_host, settings.api_token, settings.cors_origins)
            from ophthai_desktop.api.app import create_app
            from ophthai_desktop.api.server import ApiServer, ServerStartError

            server = ApiServer(create_app(self.application), settings.api_host, settings.api_port)
            try:
                server.start()
            except ServerStartError as exc:
                raise OphthaiError(str(exc)) from exc
        except OphthaiError as exc:
            log.error("the API server did not start: %s", exc.message)
            self.session.report_api_state(ApiState(enabled=True, error=exc.message))
            return
        except Exception as exc:
            log.exception("the API server did not start")
            self.session.report_api_state(ApiState(enabled=True, error=str(exc)))
            return
        with self._server_lock:
            if self._closed:
                server.stop()
                return
            self._server = server
        self.session.report_api_state(ApiState(enabled=True, url=server.url))

    def start_api_server(self, options: ServerOptions) -> str:
        """Task-pool thread (the window's Start button): (re)start the server with the
        window's choice of address and token; returns its URL.

        Raises:
            OphthaiError: The binding is refused (the network without a token) or the
                address and port are not available.
        """
        if self._starter is not None:
            self._starter.join(20)
        self.stop_api_server()
        settings = self.settings
        host = options.host
        check_api_binding(host, options.token, settings.cors_origins)
        from ophthai_desktop.api.app import create_app
        from ophthai_desktop.api.server import ApiServer, ServerStartError

        # The API reads host and token from its application's settings: same services,
        # the window's choice of binding.
        served = dataclasses.replace(
            self.application,
            settings=settings.model_copy(update={"api_host": host, "api_token": options.token}),
        )
        server = ApiServer(create_app(served), host, settings.api_port)
        try:
            server.start()
        except ServerStartError as exc:
            raise OphthaiError(str(exc)) from exc
        with self._server_lock:
            closed = self._closed
            if not closed:
                self._server = server
        if closed:
            server.stop()
            raise OphthaiError("the application is closing")
        return server.url

    def stop_api_server(self) -> None:
        """Task-pool thread (the window's Stop button): stop the server, if running."""
        with self._server_lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()
            log.info("API server stopped")

    def shutdown(self) -> None:
        """Stop the window's threads, the server and the services; safe to call twice."""
        if self._closed and self._server is None:
            return
        with self._server_lock:
            self._closed = True
        self.session.shutdown()
        if self._starter is not None:
            self._starter.join(20)
        with self._server_lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()
        self.closed_cleanly = self.application.close(stop_watcher=self.session.watch_folder_stopped)
        log.info("desktop stopped")


def settle_memory() -> None:
    """Collect once and freeze what survives (``gc.freeze``): later full collections
    skip the long-lived objects built at start, which otherwise stall every thread,
    the GUI's included, for tens of milliseconds."""
    gc.collect()
    gc.freeze()


def qt_application() -> QApplication:
    """The QApplication with the app's name, icon, style and stylesheet."""
    from PySide6.QtWidgets import QApplication

    from ophthai_desktop.ui.resources import icon
    from ophthai_desktop.ui.theme import application_stylesheet

    existing = QApplication.instance()
    qt_app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    serial_painting()
    qt_app.setApplicationName(APP_NAME)
    qt_app.setOrganizationName("OphthAI")
    qt_app.setWindowIcon(icon("app"))
    qt_app.setStyle("Fusion")
    qt_app.setStyleSheet(application_stylesheet("light", qt_app.font()))
    tune_interpreter()  # the GUI thread waits at most 1 ms for the interpreter lock
    return qt_app


#: Qt's switch for its GUI thread pool (read at the first paint that would use it).
NO_GUI_THREADPOOL = "QT_NO_GUI_THREADPOOL"


def serial_painting() -> None:
    """Paint on the GUI thread alone: turn off Qt's GUI thread pool, unless the
    environment already says what it wants.

    Qt's raster engine splits large fills and smooth scaling over a pool of threads and
    the GUI thread waits on a latch until they are done. Here the inference worker and
    the API thread keep the cores busy, so the pool's threads wait for a core while the
    GUI thread waits for them: on a two-core machine a full repaint of the window took
    4.7-6.6 ms with the pool and 3.2-4.3 ms without it, and the analysis view 0.6-1.3 ms
    against 0.15-0.3 ms (README, ``bench/gui_stall.py``). Qt reads the variable when it
    first paints, so this must run before the first window is shown."""
    os.environ.setdefault(NO_GUI_THREADPOOL, "1")


def _refuse_start(qt_app: QApplication, message: str, status: int = 1) -> int:
    """Say why the app does not start: in the log, and in a box where there is a screen
    (offscreen nobody could close it). Returns ``status``."""
    from PySide6.QtWidgets import QMessageBox

    log.error("the application could not start: %s", message)
    if qt_app.platformName() != "offscreen":
        QMessageBox.critical(None, APP_NAME, f"OphthAI could not start:\n\n{message}")
    return status


def settings_refusal(exc: SettingsRefused) -> str:
    """What the window says when settings have a value they cannot take: each one as
    the user named it and where it was set (not its value), and what to do."""
    listed = "\n".join(f"• {problem}" for problem in exc.problems)
    return (
        f"these settings have a value they cannot take:\n{listed}\n\nCorrect them there "
        "(.env.example lists each setting with what it takes), then start OphthAI again."
    )


def _claimed(lock: QLockFile, data_dir: Path) -> DataFolderClaim:
    """``lock`` taken, its file made the owner's only: QLockFile follows the umask, and
    a data folder chosen with ``OPHTHAI_DATA_DIR`` may be shared. A serve's marker left
    behind goes: a later launch would take this window for that serve, were its
    process id given again to this one."""
    with contextlib.suppress(OSError):
        (data_dir / INSTANCE_LOCK).chmod(PRIVATE_FILE_MODE)
    with contextlib.suppress(OSError):  # left by a serve that ended without removing it
        (data_dir / SERVE_MARKER).unlink(missing_ok=True)
    return DataFolderClaim(lock=lock)


def claim_data_folder(data_dir: Path, *, wait_s: float = CLOSING_WAIT_S) -> DataFolderClaim:
    """Take the data folder's instance lock, or find the window that holds it.

    When another window holds the lock, it is asked to show itself; while it does not
    answer (it is starting, closing, or hung) it is asked again between waits for the
    lock, for up to ``wait_s`` in all.
    """
    from PySide6.QtCore import QLockFile

    try:
        lock = instance_lock(data_dir)
    except StorageError as exc:
        return DataFolderClaim(refusal=exc.message)
    if lock.tryLock(0):
        return _claimed(lock, data_dir)
    if lock.error() is not QLockFile.LockError.LockFailedError:  # not another holder
        return DataFolderClaim(
            refusal=f"the data folder's lock file cannot be written ({lock.error().name})"
        )
    holder = lock.getLockInfo()[0]
    if left_by_an_ended_process(lock):  # no window to ask, nor to wait for
        return DataFolderClaim(refusal=stale_lock_refusal(data_dir, holder))
    if held_by_serve(data_dir, holder):  # no window to show, and it will not close by itself
        return DataFolderClaim(
            refusal=(
                f"ophthai serve (process {holder}) runs on this data folder, {data_dir}: stop "
                "it first, or give the window a data folder of its own (--data-dir)."
            )
        )
    deadline = time.monotonic() + wait_s
    waiting = False
    while True:
        # Ask again each round: a window still starting answers once its loop runs.
        if ask_to_show(data_dir):
            log.info(
                "OphthAI is already open on this data folder (process %s); its window was shown",
                holder,
            )
            return DataFolderClaim(shown_elsewhere=True)
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if not waiting:
            waiting = True
            log.info(
                "OphthAI on this data folder (process %s) did not answer; waiting up to "
                "%g s for it to finish closing",
                holder,
                wait_s,
            )
        if lock.tryLock(int(min(LOCK_SLICE_S, left) * 1000)):
            return _claimed(lock, data_dir)
    return DataFolderClaim(
        refusal=(
            f"OphthAI is already open on this data folder (process {holder}) and did not "
            f"answer or close within {wait_s:g} s; switch to that window, or quit it "
            "first."
        )
    )


def no_display(environ: Mapping[str, str] = os.environ) -> str:
    """Why there is no screen to open the window on ("" when there may be one).

    On Linux and the BSDs Qt needs an X or Wayland display unless ``QT_QPA_PLATFORM``
    names another platform; without one it aborts the process (SIGABRT, a core file)
    after telling the user to reinstall the application."""
    if sys.platform in ("win32", "darwin") or environ.get("QT_QPA_PLATFORM"):
        return ""
    if environ.get("DISPLAY") or environ.get("WAYLAND_DISPLAY"):
        return ""
    return (
        "there is no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY "
        "is set, as in an SSH session or a service). Start OphthAI from the desktop, or "
        "run `ophthai serve` for the API without a window."
    )


def run(data_dir: Path | None = None) -> int:
    """``ophthai`` without a command: run the desktop app until it is quit."""
    screenless = no_display()
    if screenless:
        configure_logging("INFO")
        log.error("the application could not start: %s", screenless)
        return 1
    try:
        settings = read_settings() if data_dir is None else read_settings(data_dir=data_dir)
    except SettingsRefused as exc:
        # Refused, not started on defaults: the environment beats what the Settings
        # dialog saves, and a default in place of the clinic's database URL or watch
        # folder would show another clinic's state as if it were theirs.
        configure_logging("INFO")
        return _refuse_start(qt_application(), settings_refusal(exc), status=2)
    configure_logging("DEBUG" if settings.debug else settings.log_level)

    qt_app = qt_application()
    claim = claim_data_folder(settings.data_dir)
    if claim.shown_elsewhere:
        return 0
    if claim.lock is None:
        return _refuse_start(qt_app, claim.refusal)
    # Listening before the services are built: a second launch meanwhile gets its
    # answer once the window is there (see _run_window).
    listener = InstanceServer(settings.data_dir)
    listener.listen()
    try:
        status, still_running = _run_window(settings, qt_app, listener)
    finally:
        listener.close()
        claim.lock.unlock()
    if still_running:
        exit_now(status, still_running)
    return status


def _run_window(
    settings: Settings, qt_app: QApplication, listener: InstanceServer
) -> tuple[int, str]:
    """Run the window until it is quit: the exit status, and what is still running
    ("" when nothing is; otherwise leave with :func:`exit_now`): the inference worker's
    thread, or the watch folder's on a share that does not answer. ``listener`` brings the
    window forward for later launches until the window starts closing."""
    from PySide6.QtCore import QTimer

    try:
        desktop = Desktop(settings)
    except OphthaiError as exc:
        return _refuse_start(qt_app, exc.message), ""
    # With a tray, closing the window may only hide it; quitting is explicit.
    qt_app.setQuitOnLastWindowClosed(desktop.session.tray is None)
    desktop.session.quit_requested.connect(qt_app.quit)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, quitting", signal.Signals(signum).name)
        # Queued: a quit() before exec() has started the loop would be lost. The
        # session's quit, not the QApplication's: Qt's asks the window to close, which
        # with a tray only hid it (the app went on running, hidden, after SIGTERM).
        # Without asking about unsaved changes: nobody may be there to answer; they
        # are given the shutdown's deadline instead.
        QTimer.singleShot(0, desktop.session.quit_at_once)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    wakeup = QTimer()
    wakeup.timeout.connect(lambda: None)  # lets Python run signal handlers
    wakeup.start(SIGNAL_POLL_MS)
    # Once the start-up objects exist, and again once the model is loaded, freeze
    # them out of the collector's full passes (see settle_memory).
    QTimer.singleShot(SETTLE_AFTER_MS, settle_memory)
    desktop.session.bridge.model_state_changed.connect(
        lambda state, _message, _progress: settle_memory() if state == "ready" else None
    )
    listener.show_requested.connect(desktop.session.show_window)
    listener.ready = True
    try:
        desktop.start()
        status = qt_app.exec()
    finally:
        wakeup.stop()
        listener.close()  # closing: a launch from now on waits for the lock
        desktop.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if desktop.session.inference.isRunning():
        return int(status), "the inference worker"
    if not desktop.closed_cleanly:
        return int(status), "the watch folder (a share that does not answer)"
    return int(status), ""
