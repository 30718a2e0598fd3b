"""The status bar (model, API server, watch folder), the Model menu, and the alerts of
watch-folder files and failed analyses."""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from PySide6.QtCore import QObject, QTimer, Slot

from ophthai_desktop.core import events as ev
from ophthai_desktop.core.errors import ImageStoreUnwritable
from ophthai_desktop.core.inference.engine import EngineStatus, ModelState
from ophthai_desktop.core.watcher import (
    IGNORED_PREFIXES,
    WAITING_FOR_DATABASE,
    WAITING_FOR_DATABASE_FILE,
    WAITING_FOR_IMAGE_STORE,
    WAITING_FOR_ROOM,
)
from ophthai_desktop.ui.context import ApiState, GuiContext
from ophthai_desktop.ui.controllers.watch_folder import WatchFolderController
from ophthai_desktop.ui.messages import (
    DATABASE_BACK,
    DATABASE_BACK_SHOWN_MS,
    DATABASE_DOWN,
    sentence,
)
from ophthai_desktop.ui.tray import TrayIcon
from ophthai_desktop.ui.views.banner import Banner
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.toast import AlertKind

log = logging.getLogger(__name__)

#: How long watch-folder files (refused, or taken in) and failed analyses are gathered
#: into one alert: a burst of files is one message, not one each.
ALERT_DELAY_MS = 1000
#: The least time between two such alerts, however long the files keep coming.
ALERT_GAP_MS = 5000
#: The outcomes of a watch-folder file taken in: a new patient, or a scan of one on record
#: (those alerted as files taken in; one already taken in, ``duplicate``, is not).
TAKEN_IN = frozenset({"ingested", "attached"})


_T = TypeVar("_T")


class Alert(Protocol):
    """``NotificationsController.alert``: a tray message, or a toast without a tray."""

    def __call__(self, title: str, text: str, *, kind: AlertKind = ...) -> None: ...


#: Event names the core's watch folder may use for its state changes.
WATCHER_EVENTS = frozenset({"watcher_state", "watcher_state_changed", "watch_folder_state"})


class _Gathering(Generic[_T]):
    """Watch-folder files (or failed analyses) gathered into one alert a moment: the
    first starts the wait (a moment, or what is left of the gap since the last alert),
    and ``ready`` gets those gathered by then."""

    def __init__(self, parent: QObject, ready: Callable[[list[_T]], None]) -> None:
        self._items: list[_T] = []
        self._ready = ready
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._on_timer_timeout)
        self._alerted_at = -float("inf")

    def add(self, item: _T) -> None:
        self._items.append(item)
        if not self._timer.isActive():
            since_ms = (time.monotonic() - self._alerted_at) * 1000
            self._timer.start(int(max(ALERT_DELAY_MS, ALERT_GAP_MS - since_ms)))

    def _on_timer_timeout(self) -> None:
        items, self._items = self._items, []
        if items:
            self._alerted_at = time.monotonic()
            self._ready(items)


def state_text(value: Any) -> str:
    """A watcher state as words, whatever form the core gives it in."""
    if callable(value):
        value = value()
    if isinstance(value, enum.Enum):
        value = value.value
    for attribute in ("state", "value"):
        inner = getattr(value, attribute, None)
        if isinstance(inner, str):
            value = inner
    return str(value).replace("_", " ") if value is not None else "unknown"


def ignored_text(count: int, names: Sequence[str]) -> str:
    """Says that ``count`` files (the first of them ``names``) are left in the watch
    folder for their names, and how to have them taken in."""
    shown = ", ".join(names)
    if count > len(names):
        shown += f" and {count - len(names)} more"
    prefixes = ", ".join(IGNORED_PREFIXES[:-1]) + " or " + IGNORED_PREFIXES[-1]
    files, are, their, them = (
        ("file", "is", "its name", "it") if count == 1 else ("files", "are", "their names", "them")
    )
    return (
        f"{count} {files} {are} left in the folder for {their}, not taken in: {shown}. A "
        f"name starting with {prefixes} is a hidden or temporary file's; rename {them} to "
        f"have {them} taken in."
    )


class StatusController(QObject):
    """Shows what the background services are doing."""

    def __init__(
        self,
        ctx: GuiContext,
        window: MainWindow,
        tray: TrayIcon | None,
        alert: Alert,
        watch_folder: WatchFolderController,
    ) -> None:
        super().__init__(window)
        self._watch_folder = watch_folder
        self._ctx = ctx
        self._app = ctx.application
        self._window = window
        self._status = window.status
        self._tray = tray
        self._alert = alert
        #: Watch-folder files refused since the last alert: (name, reason, moved to failed/).
        self._refused = _Gathering[tuple[str, str, bool]](self, self._alert_refused)
        #: Watch-folder files taken in since the last alert (their names), told as one
        #: alert in the same way: a clinician away from the window sees scans arrive.
        self._taken_in = _Gathering[str](self, self._alert_taken_in)
        #: Analyses of patients that failed since the last alert: (job id, reason).
        self._failed = _Gathering[tuple[int, str]](self, self._alert_failed)
        self.api_state = ApiState(enabled=self._app.settings.api_enabled, starting=True)

        ctx.bridge.model_state_changed.connect(self._on_bridge_model_state_changed)
        ctx.bridge.event_received.connect(self._on_bridge_event_received)
        window.load_model_action.triggered.connect(self.load_model)
        window.unload_model_action.triggered.connect(self.unload_model)
        window.check_model_action.triggered.connect(self.check_model)
        window.pause_watch_action.toggled.connect(self.pause_watch_folder)
        watch_folder.applied.connect(self.show_watcher)
        watch_folder.not_answering_changed.connect(self.show_watcher)
        if tray is not None:
            tray.pause_toggled.connect(self.pause_watch_folder)

    def start(self) -> None:
        self.show_model(self._app.engine.status())
        self.show_api(self.api_state)
        self.show_watcher()

    # Model -----------------------------------------------------------------------------

    def show_model(self, status: EngineStatus) -> None:
        state = status.state
        tooltip = status.message
        if state is ModelState.READY:
            text, kind = f"Model: ready · {status.device or '?'}", "ok"
        elif state is ModelState.INSTALLED and self._app.worker.holding:
            text, kind = "Model: unloaded (load it to run the queue)", "warn"
        elif state is ModelState.INSTALLED:
            text, kind = "Model: installed (loads on first analysis)", ""
        elif state is ModelState.NOT_INSTALLED and status.damaged:
            text, kind = "Model: files damaged", "error"
        elif state is ModelState.NOT_INSTALLED:
            text, kind = "Model: not installed", "warn"
        elif state is ModelState.DOWNLOADING:
            percent = f" {status.progress * 100:.0f}%" if status.progress is not None else ""
            text, kind = f"Model: downloading{percent}", "warn"
        elif state is ModelState.ERROR:
            text, kind = "Model: error", "error"
            tooltip = status.error or status.message
        else:
            text, kind = f"Model: {state.value}…", "warn"
        self._status.set_model(text, kind, tooltip)
        ready = state is ModelState.READY
        self._window.load_model_action.setEnabled(state is ModelState.INSTALLED)
        self._window.unload_model_action.setEnabled(ready)

    @Slot(str, str, object)
    def _on_bridge_model_state_changed(self, _state: str, _message: str, _progress: object) -> None:
        self.show_model(self._app.engine.status())

    @Slot()
    def load_model(self) -> None:
        self._app.worker.request_load()

    @Slot()
    def unload_model(self) -> None:
        self._app.worker.request_unload()

    @Slot()
    def check_model(self) -> None:
        self._ctx.slow_tasks.submit(self._app.engine.refresh, self.show_model)

    # API server --------------------------------------------------------------------------

    @Slot(object)
    def show_api(self, state: ApiState) -> None:
        self.api_state = state
        if not state.enabled:
            self._status.set_api("API: off", "", "The embedded API server is turned off")
        elif state.error:
            self._status.set_api("API: failed to start", "error", state.error)
        elif state.url:
            self._status.set_api(
                f"API: {state.url}", "ok", f"Other apps can connect; docs at {state.url}/docs"
            )
        else:
            self._status.set_api("API: starting…", "warn", "")

    # Watch folder ------------------------------------------------------------------------

    def show_watcher(self, state: Any = None, message: str = "") -> None:
        """The watch folder's state (from its event, or asked now)."""
        watcher = self._ctx.watcher
        if watcher is None:
            self._status.set_watcher(
                "Watch folder: not available", "", "This version has no watch folder"
            )
            self._set_pause_enabled(False)
            return
        hung = self._watch_folder.not_answering
        if hung is not None:
            self._status.set_watcher(
                "Watch folder: does not answer",
                "error",
                f"{hung} did not answer within {self._watch_folder.answer_within_s:g} s "
                "(a network share that is not reachable?). The watch folder is set up as "
                "the settings say once it answers.",
            )
            self._set_pause_enabled(False)
            return
        status = getattr(watcher, "status", None)
        if state is None:
            state = getattr(status, "state", None) or getattr(watcher, "state", None)
            message = message or str(getattr(status, "message", "") or "")
        text = state_text(state)
        folder = getattr(watcher, "folder", None)
        if text == "stopped" and not self._app.settings.watch_folder_enabled:
            text, kind = "off", ""
            tooltip = f"Set OPHTHAI_WATCH_FOLDER_ENABLED=true to take in files from {folder}"
        else:
            kind = {"running": "ok", "paused": "warn", "error": "error"}.get(text, "")
            tooltip = " — ".join(str(x) for x in (folder, message) if x)
        label = f"Watch folder: {text}"
        if text == "running" and message == WAITING_FOR_DATABASE:
            label, kind = "Watch folder: waiting for the database", "warn"
        elif text == "running" and message == WAITING_FOR_DATABASE_FILE:
            label, kind = "Watch folder: waiting — the database file is gone", "error"
        elif text == "running" and message == WAITING_FOR_ROOM:
            label, kind = "Watch folder: waiting — the disk is full", "error"
        elif text == "running" and message == WAITING_FOR_IMAGE_STORE:
            label, kind = "Watch folder: waiting — images cannot be stored", "error"
            images = str(self._app.images.root)  # no I/O
            tooltip += "\n\n" + sentence(ImageStoreUnwritable.what_to_do(images))
        if text == "error" and not getattr(watcher, "answering", True):
            # A resume or a try again waits on a share (the words in the tooltip).
            label = "Watch folder: does not answer"
        _reason, retrying, when = message.partition("; retrying in ")
        if text == "error" and retrying:
            label += f"; retrying in {when}"  # the reason (with the folder) in the tooltip
        ignored = getattr(status, "ignored", 0) if text in ("running", "paused") else 0
        if ignored:
            label += f" · {ignored} file{'s' if ignored > 1 else ''} ignored"
            tooltip += "\n\n" + ignored_text(ignored, getattr(status, "ignored_names", ()))
        self._status.set_watcher(label, kind, tooltip)
        # Pause on a watch folder in error stops its retries until Resume.
        self._set_pause_enabled(text in ("running", "paused", "error"))
        paused = text == "paused"
        for action in self._pause_actions():
            blocker = action.blockSignals(True)
            action.setChecked(paused)
            action.blockSignals(blocker)

    def _pause_actions(self) -> list[Any]:
        actions = [self._window.pause_watch_action]
        if self._tray is not None:
            actions.append(self._tray.pause_action)
        return actions

    def _set_pause_enabled(self, enabled: bool) -> None:
        for action in self._pause_actions():
            action.setEnabled(enabled)

    @Slot(object)
    def _on_bridge_event_received(self, event: ev.Event) -> None:
        name = getattr(event, "name", "")
        if name in WATCHER_EVENTS or type(event).__name__ == "WatcherStateChanged":
            self.show_watcher(getattr(event, "state", None), getattr(event, "message", ""))
        elif isinstance(event, ev.DatabaseAvailabilityChanged):
            self._show_database(event.available)
        elif name == "ingest_finished" and getattr(event, "outcome", "") == "failed":
            file_name = getattr(event, "file_name", "a file")
            reason = getattr(event, "reason", "") or "it could not be read"
            self._status.show_message(
                f"Watch folder: {file_name} was not taken in ({reason})", 15_000
            )
            self._refused.add((file_name, reason, bool(getattr(event, "moved_to", ""))))
        elif name == "ingest_finished" and getattr(event, "outcome", "") in TAKEN_IN:
            self._taken_in.add(getattr(event, "file_name", "a file"))
        elif isinstance(event, ev.AnalysisFailed) and event.patient_id is not None:
            # An image of no patient is a client's, which the failure is answered to.
            self._failed.add((event.job_id, event.reason))

    def _show_database(self, available: bool) -> None:
        """The database stopped answering (said once, whichever thread's call noticed:
        the worker's, the watch folder's, the API's) or answers again: every banner that
        said it gives way, rather than staying until closed (one whose message was a
        failure the outage caused says what to do again); those about other failures
        stay."""
        if not available:
            banner = self._window.banner
            cause = self._app.db.outage_cause  # the file deleted: never back, say why
            if cause is not None:
                banner.show_message(sentence(cause), "error")
            elif not banner.resolvable:  # else it says so already, with what failed
                banner.show_message(
                    DATABASE_DOWN,
                    "error",
                    resolved=DATABASE_BACK,
                    resolved_ms=DATABASE_BACK_SHOWN_MS,
                )
            return
        for banner in self._window.findChildren(Banner):  # the page's own among them
            if not banner.resolve() and banner.message() == DATABASE_DOWN:
                # A call's failure told in the outage's own words (describe).
                banner.show_message(DATABASE_BACK, "info", shown_ms=DATABASE_BACK_SHOWN_MS)

    def _alert_refused(self, refused: list[tuple[str, str, bool]]) -> None:
        """One alert (tray or toast) for the files refused in the last moment."""
        if len(refused) == 1:
            file_name, reason, moved = refused[0]
            where = (
                "It is in the failed folder with its reason"
                if moved
                else "It could not be moved to the failed folder"
            )
            self._alert(
                "Watch folder: a file was not taken in",
                f"{file_name}: {reason}. {where}; nothing was added.",
                kind="warning",
            )
            return
        names = ", ".join(name for name, _, _ in refused[:3])
        more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        where = (
            "They are in the failed folder with their reasons (see Notifications)"
            if all(moved for _, _, moved in refused)
            else "See Notifications for why, and where each one is"
        )
        self._alert(
            f"Watch folder: {len(refused)} files were not taken in",
            f"{names}{more}. {where}; nothing was added.",
            kind="warning",
        )

    def _alert_taken_in(self, taken_in: list[str]) -> None:
        """One alert (tray or toast) for the scans the watch folder took in in the last
        moment; the patients are in the list and each scan in Notifications."""
        if len(taken_in) == 1:
            self._alert(
                "Watch folder: a new scan",
                f"{taken_in[0]} was filed and its analysis queued (see Notifications).",
                kind="info",
            )
            return
        names = ", ".join(taken_in[:3])
        more = f" and {len(taken_in) - 3} more" if len(taken_in) > 3 else ""
        self._alert(
            f"Watch folder: {len(taken_in)} new scans",
            f"{names}{more} were filed and their analyses queued (see Notifications).",
            kind="info",
        )

    def _alert_failed(self, failed: list[tuple[int, str]]) -> None:
        """One alert (tray or toast) for the analyses that failed in the last moment; each
        has its notification, naming the patient."""
        reasons = dict(failed)  # a failure stored again is announced again
        if len(reasons) == 1:
            ((job_id, reason),) = reasons.items()
            self._alert(
                "An analysis failed",
                f"Job #{job_id}: {reason.rstrip('.')}. See Notifications for the patient.",
                kind="warning",
            )
            return
        jobs = ", ".join(f"#{job_id}" for job_id in list(reasons)[:3])
        more = f" and {len(reasons) - 3} more" if len(reasons) > 3 else ""
        why = set(reasons.values())
        if len(why) == 1:
            # A burst most often fails for one reason (the GPU's memory, for each scan of
            # a night's watch folder): said, as it says what to do.
            text = (
                f"Jobs {jobs}{more}: {why.pop().rstrip('.')}. See Notifications for the patients."
            )
        else:
            text = f"Jobs {jobs}{more}. See Notifications for the patients and why."
        self._alert(f"{len(reasons)} analyses failed", text, kind="warning")

    @Slot(bool)
    def pause_watch_folder(self, paused: bool) -> None:
        # Not on a task pool: the watcher's calls wait behind one on a share that does
        # not answer.
        self._watch_folder.set_paused(paused)
