"""Starting and stopping the embedded API server from the window.

``ui`` does not import ``api``: the launcher (:mod:`ophthai_desktop.desktop`) owns the
server and hands the window a :class:`ServerControl` of plain callables. They block
(binding a port, waiting for open requests to finish), so they run on the task pool.
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from PySide6.QtCore import QObject, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication

from ophthai_desktop.core.errors import OphthaiError
from ophthai_desktop.core.settings import Settings, check_api_binding
from ophthai_desktop.ui.context import ApiState, GuiContext
from ophthai_desktop.ui.messages import describe
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.server_dialog import ServerDialog

log = logging.getLogger(__name__)

#: The address the server listens on for clinic-network access.
LAN_HOST = "0.0.0.0"
#: Bytes of randomness in a generated token (32 characters).
TOKEN_BYTES = 24


@dataclass(frozen=True)
class ServerOptions:
    """How to start the server: on all interfaces (``lan``) and with which token."""

    lan: bool
    token: str | None


@dataclass(frozen=True)
class ServerControl:
    """What the launcher lets the window do with the server. Both callables block and
    are called on a task-pool thread.

    Attributes:
        start: Stops a running server, then starts one with the options; returns its
            URL. Raises :class:`OphthaiError` with a message for the clinician.
        stop: Stops the server; returns when it has stopped.
    """

    start: Callable[[ServerOptions], str]
    stop: Callable[[], None]


def lan_address() -> str:
    """This computer's address on the network (no packet is sent), else loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.254.254.254", 1))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{host}{port}", parts.path, "", ""))


def shown_url(url: str) -> str:
    """The address others use: a server on all interfaces shows the network address."""
    return _with_host(url, lan_address()) if urlsplit(url).hostname == LAN_HOST else url


def local_url(url: str) -> str:
    """The address this computer's browser uses."""
    return _with_host(url, "127.0.0.1") if urlsplit(url).hostname == LAN_HOST else url


class ServerController(QObject):
    """The API server dialog and Help → Open API docs.

    Signals:
        api_state_changed(ApiState): the server started, stopped or failed (for the
            status bar).
    """

    api_state_changed = Signal(object)

    def __init__(
        self, ctx: GuiContext, window: MainWindow, control: ServerControl | None = None
    ) -> None:
        super().__init__(window)
        self._ctx = ctx
        self._window = window
        self._control = control
        settings = ctx.application.settings
        self.api_state = ApiState(enabled=settings.api_enabled, starting=settings.api_enabled)
        self.lan = not settings.api_host_is_loopback
        self.token: str | None = settings.api_token
        self._saved = (self.lan, self.token)  # the Settings' choice, to notice changes
        self.busy = False
        self.dialog: ServerDialog | None = None
        window.api_server_action.triggered.connect(self.open)
        window.api_server_action.setEnabled(control is not None)
        window.api_docs_action.triggered.connect(self.open_docs)

    # Dialog ----------------------------------------------------------------------------

    @Slot()
    def open(self) -> ServerDialog:
        if self.dialog is None:
            dialog = ServerDialog(self._window)
            dialog.start_requested.connect(self.start)
            dialog.stop_requested.connect(self.stop)
            dialog.lan_toggled.connect(self.set_lan)
            dialog.generate_requested.connect(self.generate_token)
            dialog.copy_requested.connect(self.copy_token)
            self.dialog = dialog
        self._refresh()
        self.dialog.show()
        self.dialog.raise_()
        return self.dialog

    def _refresh(self) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        state = self.api_state
        running = bool(state.enabled and state.url)
        if self.busy or (state.enabled and state.starting and not state.url):
            text, kind = "starting or stopping…", "warn"
        elif state.error:
            text, kind = f"not running: {state.error}", "error"
        elif running and state.url:
            text, kind = f"running at {shown_url(state.url)}", "ok"
        else:
            text, kind = "stopped", ""
        busy = self.busy or self._control is None
        dialog.show_state(text, kind, running=running, busy=busy)
        dialog.set_lan(self.lan)
        dialog.token.setText(self.token or "")
        dialog.copy_button.setEnabled(bool(self.token))
        if self._control is None:
            dialog.show_hint("This window was started without a server to control.")

    @Slot(object)
    def follow_settings(self, settings: Settings) -> None:
        """Take the network access and token just saved in Settings for the next start,
        when they changed (a token generated here and not saved there is kept otherwise)."""
        saved = (not settings.api_host_is_loopback, settings.api_token)
        if saved != self._saved:
            self._saved = saved
            self.lan, self.token = saved
            self._refresh()

    # Actions (GUI thread) ------------------------------------------------------------------

    @Slot(bool)
    def set_lan(self, on: bool) -> None:
        """LAN access; refused, with the reason, while there is no usable token."""
        if on:
            try:
                check_api_binding(LAN_HOST, self.token)
            except OphthaiError as exc:
                self.lan = False
                self._refresh()
                if self.dialog is not None:
                    self.dialog.show_hint(
                        f"{describe(exc)}. Generate a token first.".replace("..", "."), "error"
                    )
                return
        self.lan = on
        self._refresh()
        if self.dialog is not None:
            self.dialog.show_hint(
                "Other computers can connect with the token once the server (re)starts."
                if on
                else "Only programs on this computer can connect."
            )

    @Slot()
    def generate_token(self) -> None:
        self.token = secrets.token_urlsafe(TOKEN_BYTES)
        self._refresh()
        if self.dialog is not None:
            self.dialog.show_hint("New token generated; it takes effect when the server starts.")

    @Slot()
    def copy_token(self) -> None:
        if self.token:
            QGuiApplication.clipboard().setText(self.token)
            if self.dialog is not None:
                self.dialog.show_hint("Token copied to the clipboard.")

    @Slot()
    def start(self) -> None:
        control = self._control
        if control is None or self.busy:
            return
        options = ServerOptions(lan=self.lan, token=self.token or None)
        try:
            check_api_binding(LAN_HOST if options.lan else "127.0.0.1", options.token)
        except OphthaiError as exc:
            self._report(ApiState(enabled=True, error=describe(exc)))
            return
        self.busy = True
        self._report(ApiState(enabled=True, starting=True))
        self._ctx.slow_tasks.submit(
            lambda: control.start(options), self._on_started, self._on_start_failed
        )

    @Slot()
    def stop(self) -> None:
        control = self._control
        if control is None or self.busy:
            return
        self.busy = True
        self._refresh()
        self._ctx.slow_tasks.submit(control.stop, self._on_stopped, self._on_stop_failed)

    @Slot()
    def open_docs(self) -> None:
        """Help → Open API docs: the server's interactive documentation in the browser."""
        url = self.api_state.url
        if not url:
            self._window.banner.show_message(
                "The API server is not running. Start it from Tools → API server…", "info"
            )
            return
        QDesktopServices.openUrl(QUrl(f"{local_url(url)}/docs"))

    # Results --------------------------------------------------------------------------------

    @Slot(object)
    def show_api_state(self, state: ApiState) -> None:
        """The server's state, whoever reported it (the launcher at start, or us)."""
        self.api_state = state
        self._refresh()

    def _report(self, state: ApiState) -> None:
        self.show_api_state(state)
        self.api_state_changed.emit(state)

    def _on_started(self, url: object) -> None:
        self.busy = False
        log.info("API server started from the window (lan=%s)", self.lan)
        self._report(ApiState(enabled=True, url=shown_url(str(url))))

    def _on_start_failed(self, exc: BaseException) -> None:
        self.busy = False
        self._report(ApiState(enabled=True, error=describe(exc)))

    def _on_stopped(self, _result: object) -> None:
        self.busy = False
        log.info("API server stopped from the window")
        self._report(ApiState(enabled=False))

    def _on_stop_failed(self, exc: BaseException) -> None:
        self.busy = False
        self._refresh()
        self._window.banner.show_message(describe(exc), "error")
