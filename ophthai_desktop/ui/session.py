"""One running desktop window over one :class:`Application`.

:class:`GuiSession` builds the views and their controllers, hosts the inference worker
in a QThread, starts the watch folder where the core has one, and shuts all of it down
in order. The launcher (``ophthai_desktop.desktop``) adds the embedded API server and
reports its state with :attr:`GuiSession.api_state_reported`; tests build a session
directly.
"""

from __future__ import annotations

import contextlib
import html
import logging
import platform
from importlib import metadata

from PySide6.QtCore import QDeadlineTimer, QObject, Qt, Signal, Slot, qVersion
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QMessageBox, QSystemTrayIcon

from ophthai_desktop import __version__
from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.inference.engine import EngineStatus, InferenceEngine, ModelState
from ophthai_desktop.core.inference.memory import release_memory
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.ui.bridge import EventBridge
from ophthai_desktop.ui.clipboard import BreakHintRemover
from ophthai_desktop.ui.context import ApiState, GuiContext, clinician_name
from ophthai_desktop.ui.controllers.analysis import AnalysisController
from ophthai_desktop.ui.controllers.help import HelpController
from ophthai_desktop.ui.controllers.imports import ImportController
from ophthai_desktop.ui.controllers.jobs import JobsController
from ophthai_desktop.ui.controllers.model_manager import ModelManagerController
from ophthai_desktop.ui.controllers.notifications import NotificationsController
from ophthai_desktop.ui.controllers.oculomics import OculomicsController
from ophthai_desktop.ui.controllers.patients import PatientsController
from ophthai_desktop.ui.controllers.quit_guard import QuitGuard
from ophthai_desktop.ui.controllers.scans import ScansController
from ophthai_desktop.ui.controllers.server import ServerControl, ServerController
from ophthai_desktop.ui.controllers.settings import SettingsController
from ophthai_desktop.ui.controllers.status import StatusController
from ophthai_desktop.ui.controllers.watch_folder import WatchFolderController
from ophthai_desktop.ui.gc_collector import MainThreadCollector
from ophthai_desktop.ui.inference_thread import InferenceThread
from ophthai_desktop.ui.models.job_table import JobTableModel
from ophthai_desktop.ui.models.notification_list import NotificationListModel
from ophthai_desktop.ui.models.patient_table import PatientTableModel
from ophthai_desktop.ui.tasks import TaskRunner
from ophthai_desktop.ui.tray import TrayIcon
from ophthai_desktop.ui.views.analysis import AnalysisView
from ophthai_desktop.ui.views.jobs import JobQueuePanel
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.notifications import NotificationsPanel
from ophthai_desktop.ui.views.oculomics import OculomicsView
from ophthai_desktop.ui.views.patient_list import PatientListView
from ophthai_desktop.ui.views.patient_page import PatientPage
from ophthai_desktop.ui.views.scan_viewer import ScanViewer
from ophthai_desktop.ui.window_state import (
    hidden_columns,
    list_place,
    restore_window_state,
    save_hidden_columns,
    save_list_place,
    save_window_state,
)

log = logging.getLogger(__name__)

#: How long quitting waits, in all, for the background tasks of both runners (the
#: changes the clinician made among them) before it gives up on them.
SHUTDOWN_WAIT_MS = 15_000

#: The distributions whose versions the About box shows (build.spec bundles their
#: metadata: without it the frozen app's About said "not installed").
ABOUT_PACKAGES = ("PySide6-Essentials", "torch", "transformers", "SQLAlchemy", "FastAPI")


def versions() -> list[tuple[str, str]]:
    """Versions for the About box, read from package metadata (importing torch here
    would cost seconds on the GUI thread)."""
    found = [
        ("Python", platform.python_version()),
        ("Qt", qVersion()),
    ]
    for package in ABOUT_PACKAGES:
        try:
            found.append((package.split("-")[0], metadata.version(package)))
        except metadata.PackageNotFoundError:
            found.append((package.split("-")[0], "not installed"))
    return found


#: How About puts a model state in which nothing is loaded.
NOT_LOADED = {
    ModelState.NOT_INSTALLED: "not installed",
    ModelState.INSTALLED: "installed, not loaded yet",
    ModelState.DOWNLOADING: "downloading",
    ModelState.LOADING: "loading",
    ModelState.UNLOADING: "unloading",
    ModelState.ERROR: "could not be loaded",
}


def model_lines(status: EngineStatus, settings: Settings) -> tuple[str, str]:
    """About's two lines on the model: what is loaded now (or that none is, and why),
    and what the settings name for the next load (a local folder wins over the id)."""
    if status.is_ready:
        loaded = f"Model loaded: {status.model_name or status.model_id}"
        if status.revision:
            loaded += f" (revision {status.revision[:12]})"
        if status.device:
            loaded += f" on {status.device}"
    else:
        why = NOT_LOADED.get(status.state, status.state.value)
        if status.state is ModelState.NOT_INSTALLED and status.damaged:
            why = "its files are damaged"
        loaded = f"Model loaded: none ({why})"
    if settings.model_path is not None:
        configured = f"Model configured: {settings.model_path} (local folder)"
    else:
        configured = f"Model configured: {settings.model_id} (Hugging Face id)"
    return loaded, configured


class GuiSession(QObject):
    """The window, its controllers and the threads behind them.

    Signals:
        api_state_reported(ApiState): emit from any thread to update the status bar.
        quit_requested(): the clinician quit (menu, tray, or closing without a tray).
        watch_folder_paused_by_client(bool paused): an API client paused (or resumed)
            the watch folder; emitted from its control thread.
    """

    api_state_reported = Signal(object)
    quit_requested = Signal()
    watch_folder_paused_by_client = Signal(bool)

    def __init__(
        self,
        application: Application,
        *,
        tray: bool | None = None,
        server: ServerControl | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.application = application
        settings = application.settings
        self.bridge = EventBridge(application.bus, self)
        # Garbage is collected on this thread only (see gc_collector): a Qt object in
        # a cycle must not be destroyed on the worker's, a pool's or the server's.
        self.collector = MainThreadCollector(self)
        self.tasks = TaskRunner(self)
        self.break_hints = BreakHintRemover(QGuiApplication.clipboard(), self)
        # Long work (downloads, model checks) one notch below the window; the quick
        # reads and changes above at its priority (see TaskRunner).
        self.slow_tasks = TaskRunner(self, lowered=True)
        self.context = GuiContext(
            application=application,
            bridge=self.bridge,
            tasks=self.tasks,
            actor=Actor(who=clinician_name(settings.user_name), via="gui"),
            slow_tasks=self.slow_tasks,
        )

        self.patient_list = PatientListView(PatientTableModel())
        self.scan_viewer = ScanViewer()
        self.analysis_view = AnalysisView()
        self.oculomics_view = OculomicsView()
        self.patient_page = PatientPage(
            self.scan_viewer, self.analysis_view, oculomics=self.oculomics_view
        )
        self.notifications_panel = NotificationsPanel(NotificationListModel())
        self.jobs_panel = JobQueuePanel(JobTableModel())
        self.window = MainWindow(
            self.patient_list, self.patient_page, self.notifications_panel, self.jobs_panel
        )
        use_tray = QSystemTrayIcon.isSystemTrayAvailable() if tray is None else tray
        self.tray = TrayIcon(self) if use_tray else None

        ctx = self.context
        self.patients = PatientsController(ctx, self.window, self.patient_list, self.patient_page)
        self.scans = ScansController(ctx, self.scan_viewer, self.patients)
        self.oculomics = OculomicsController(ctx, self.oculomics_view, self.patients)
        self.analysis = AnalysisController(
            ctx, self.analysis_view, self.patient_page, self.window, self.patients
        )
        self.imports = ImportController(ctx, self.window, self.patients, self.patient_page)
        self.notifications = NotificationsController(
            ctx, self.window, self.notifications_panel, self.patients, self.tray
        )
        self.jobs = JobsController(ctx, self.window, self.jobs_panel, self.patients)
        self.watch_folder = WatchFolderController(ctx, self)
        self.status = StatusController(
            ctx,
            self.window,
            self.tray,
            alert=self.notifications.alert,
            watch_folder=self.watch_folder,
        )
        self.settings_controller = SettingsController(
            ctx, self.window, self.watch_folder, tray_available=self.tray is not None
        )
        self.model_manager = ModelManagerController(ctx, self.window)
        self.server = ServerController(ctx, self.window, server)
        self.help = HelpController(self.window)
        self.inference = InferenceThread(application.worker, self)

        self.tasks.failed.connect(self._on_tasks_failed)
        self.slow_tasks.failed.connect(self._on_tasks_failed)
        self.api_state_reported.connect(self.status.show_api)
        self.api_state_reported.connect(self.server.show_api_state)
        self.api_state_reported.connect(self.settings_controller.show_api_state)
        self.server.api_state_changed.connect(self.api_state_reported)
        self.window.model_manager_action.triggered.connect(self.model_manager.open)
        self.imports.imported.connect(lambda _pid, _n: self.analysis.explain_model_state())
        self.window.quit_action.triggered.connect(self.quit)
        self.window.about_action.triggered.connect(self._on_about_triggered)
        self.window.settings_action.triggered.connect(self.settings_controller.open_dialog)
        self.settings_controller.settings_saved.connect(
            lambda _settings: self.analysis.follow_user_name()
        )
        self.settings_controller.settings_saved.connect(self.server.follow_settings)
        self.settings_controller.settings_saved.connect(self.model_manager.follow_settings)
        # A Pause lasts until Resume, across restarts (settings.env): the clinician's,
        # and an API client's, written in the order they were made (on this thread).
        self.window.pause_watch_action.toggled.connect(
            self.settings_controller.remember_watch_folder_paused
        )
        self.watch_folder_paused_by_client.connect(
            self.settings_controller.remember_watch_folder_paused
        )
        self.window.open_watch_folder_action.triggered.connect(
            self.settings_controller.open_watch_folder
        )
        self.window.close_policy = self._close_policy
        if self.tray is not None:
            self.tray.show_requested.connect(self.show_window)
            self.tray.quit_requested.connect(self.quit)
            self.tray.pause_toggled.connect(self.settings_controller.remember_watch_folder_paused)
        self._started = False
        self._quitting = False
        self._closed = False
        application.keep_watch_folder_paused = self._keep_clients_pause
        #: Whether :meth:`shutdown` stopped the watch folder: False while a call on it
        #: still waits on a share that does not answer (the application then must not
        #: wait to stop it either).
        self.watch_folder_stopped = True
        self._told_about_tray = False
        self.about_box: QMessageBox | None = None
        #: Asks before quitting leaves changes the clinician made unsaved.
        self.quit_guard = QuitGuard(self.tasks, self.window, self.quit, self.show_window)

    # Life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load the first data, start the inference worker (and the watch folder)."""
        if self._started:
            return
        self._started = True
        self.collector.start()
        if isinstance(self.application.engine, InferenceEngine):
            # A dropped model's garbage is collected on this thread too (gc_collector).
            self.application.engine.release_memory = self.collector.release_memory
        settings = self.application.settings
        self.status.start()
        self.settings_controller.start()
        restore_window_state(self.window)
        self.window.patient_list.hide_columns(hidden_columns("patients"))
        self.patients.start(list_place())
        self.notifications.start()
        self.jobs.start()
        if settings.load_model_on_startup:
            self.application.worker.request_load()
        self.inference.start()
        self.watch_folder.start()
        if self.tray is not None:
            self.tray.show()
        log.info(
            "system tray: %s",
            "icon shown" if self.tray is not None else "none (alerts are in-window toasts)",
        )

    def show_window(self) -> None:
        """Show the window (from the tray, or for a second launch) as it was: minimised
        becomes shown, maximised stays maximised."""
        window = self.window
        if window.isMinimized():
            window.setWindowState(window.windowState() & ~Qt.WindowState.WindowMinimized)
        window.show()
        window.raise_()
        window.activateWindow()

    @Slot()
    def quit(self) -> None:
        """Close the window for good and ask the launcher to end the application; with
        changes not saved yet, ask first (:class:`QuitGuard`)."""
        if not self._quitting and not self.quit_guard.allows_quit():
            return
        self.quit_at_once()

    @Slot()
    def quit_at_once(self) -> None:
        """Quit without asking (a signal: ``SIGTERM`` at log-out); changes not saved
        yet are still given the shutdown's deadline to be saved."""
        self._quitting = True
        self.window.close()
        self.quit_requested.emit()

    def shutdown(self) -> None:
        """Stop everything this session started, in order; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._quitting = True
        self.collector.closing()  # the worker must not wait for this thread, busy here
        # Gone from the screen at once: what follows can take seconds (a running
        # analysis is cancelled and waited for).
        save_window_state(self.window)
        save_hidden_columns("patients", self.window.patient_list.hidden_columns())
        save_list_place(self.patients.place)
        self.window.hide()
        if self.tray is not None:
            self.tray.hide()
        self.bridge.close()
        self.jobs.stop()
        self.model_manager.stop()
        if not self.inference.stop():
            log.warning("closing without waiting for the inference worker")
        # Not waiting for a share that does not answer (see watch_folder_stopped).
        self.watch_folder_stopped = self.watch_folder.stop()
        # One deadline for both: each waited its own, one after the other (30 s).
        deadline = QDeadlineTimer(SHUTDOWN_WAIT_MS)
        self.slow_tasks.shutdown(deadline)
        self.tasks.shutdown(deadline, drop_unsaved=self.quit_guard.drop_unsaved)
        self.settings_controller.save_watch_folder_paused_now()  # a write the pool dropped
        self.window.close()
        self.window.deleteLater()
        self.collector.stop()  # the threads that could collect have stopped
        if isinstance(self.application.engine, InferenceEngine):
            self.application.engine.release_memory = release_memory  # as without a window
        log.info("desktop session closed")

    def _keep_clients_pause(self, paused: bool) -> None:
        """An API client's control thread: it paused (or resumed) the watch folder,
        which the settings controller keeps as it does the clinician's (GUI thread)."""
        if self._closed:
            return  # quitting: the watch folder is stopped, the last write made
        with contextlib.suppress(RuntimeError):  # the session's objects are gone
            self.watch_folder_paused_by_client.emit(paused)

    def _close_policy(self) -> bool | None:
        """Closing the window hides it to the tray (when set and possible), else quits
        (None: it stays, asked first whether to leave changes unsaved)."""
        if self._quitting:
            return True
        if self.tray is not None and self.application.settings.minimize_to_tray:
            if not self._told_about_tray:
                self._told_about_tray = True
                self.tray.notify(
                    "OphthAI is still running",
                    "Analyses and the watch folder carry on. Quit from the tray menu.",
                )
            return False
        if not self.quit_guard.allows_quit():
            return None
        self._quitting = True
        self.quit_requested.emit()
        return True

    def report_api_state(self, state: ApiState) -> None:
        """Any thread: show the API server's state."""
        self.api_state_reported.emit(state)

    # Slots ---------------------------------------------------------------------------------

    @Slot(str)
    def _on_tasks_failed(self, message: str) -> None:
        self.window.banner.show_message(message, "error")

    @Slot()
    def _on_about_triggered(self) -> None:
        if self.about_box is not None:  # already open: to the front, not a second one
            self.about_box.raise_()
            self.about_box.activateWindow()
            return
        box = QMessageBox(self.window)
        box.setWindowTitle("About OphthAI Desktop")
        box.setIconPixmap(self.window.windowIcon().pixmap(64, 64))
        # A gap between a name and its version (none by default: "transformers5.25.0").
        rows = "".join(
            f'<tr><td style="padding-right: 12px">{name}</td><td>{value}</td></tr>'
            for name, value in versions()
        )
        model = "<br>".join(
            html.escape(line)  # a folder's name is not markup
            for line in model_lines(self.application.engine.status(), self.application.settings)
        )
        box.setText(
            f"<b>OphthAI Desktop {__version__}</b><br>Ophthalmology workstation with local "
            f"AI analysis.<br><br>{model}<br><br>AI results are preliminary until a "
            f"clinician validates them.<br><br><table>{rows}</table>"
        )
        # Deleted once closed, as the other information boxes are: each About read
        # stayed a hidden child of the window for as long as it was open.
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(self._on_about_box_finished)
        box.open()
        self.about_box = box

    @Slot()
    def _on_about_box_finished(self) -> None:
        self.about_box = None
