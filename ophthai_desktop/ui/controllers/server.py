"""Starting and stopping the embedded API server from the window.

``ui`` does not import ``api``: the launcher (:mod:`ophthai_desktop.desktop`) owns the
server and hands the window a :class:`ServerControl` of plain callables. They block
(binding a port, waiting for open requests to finish), so they run on the task pool.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
from collections.abc import Callable, Collection
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from PySide6.QtCore import QObject, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtNetwork import QAbstractSocket, QNetworkInterface

from ophthai_desktop.core.errors import InvalidInput, OphthaiError
from ophthai_desktop.core.settings import Settings, check_api_binding, is_loopback_host
from ophthai_desktop.ui.context import ApiState, GuiContext
from ophthai_desktop.ui.messages import describe
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.server_dialog import ServerDialog

log = logging.getLogger(__name__)

#: The address the server listens on for clinic-network access: every interface.
LAN_HOST = "0.0.0.0"
#: Listening here means every interface, as :data:`LAN_HOST` does (IPv6).
ANY_HOSTS = frozenset({LAN_HOST, "::"})
#: Bytes of randomness in a generated token (32 characters).
TOKEN_BYTES = 24


@dataclass(frozen=True)
class ServerOptions:
    """How to start the server: the address it listens on and the token it requires."""

    host: str
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


def own_addresses() -> list[tuple[str, str]]:
    """This computer's addresses on its networks that the server can listen on, with
    the interface that has each: ``[("192.168.1.20", "eth0"), ...]``. Loopback and
    link-local addresses are left out (loopback is offered on its own, and a link-local
    one needs its interface named to be listened on)."""
    found: list[tuple[str, str]] = []
    for interface in QNetworkInterface.allInterfaces():
        flags = interface.flags()
        if not (flags & QNetworkInterface.InterfaceFlag.IsUp) or (
            flags & QNetworkInterface.InterfaceFlag.IsLoopBack
        ):
            continue
        for entry in interface.addressEntries():
            address = entry.ip()
            if address.protocol() not in (
                QAbstractSocket.NetworkLayerProtocol.IPv4Protocol,
                QAbstractSocket.NetworkLayerProtocol.IPv6Protocol,
            ):
                continue
            if address.isLoopback() or address.isLinkLocal():
                continue
            found.append((address.toString(), interface.humanReadableName()))
    return found


def listen_choices(addresses: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What the dialog offers: this computer only, every interface, then each address."""
    return [
        ("127.0.0.1", "this computer only"),
        (LAN_HOST, "every network interface"),
        *addresses,
    ]


def listen_host(text: str, own: Collection[str]) -> str:
    """The address typed or picked (``"192.168.1.20  (eth0)"`` reads as its first word),
    checked: loopback, every interface, or one of ``own``.

    Raises:
        InvalidInput: It is not an IP address (or ``localhost``), or not this
            computer's.
    """
    words = text.split()
    host = words[0].strip("[]") if words else ""
    if not host:
        raise InvalidInput("give the address to listen on, such as 127.0.0.1", field="api_host")
    if host.lower() == "localhost":
        return "localhost"
    try:
        address = ipaddress.ip_address(host)
    except ValueError as exc:
        raise InvalidInput(
            f"{host!r} is not an IP address; choose one from the list or type one of this "
            "computer's, such as 127.0.0.1",
            field="api_host",
        ) from exc
    host = str(address)
    if host in ANY_HOSTS or address.is_loopback:
        return host
    if host not in {str(ipaddress.ip_address(a.split("%")[0])) for a in own}:
        raise InvalidInput(
            f"{host} is not an address of this computer; choose one from the list",
            field="api_host",
        )
    return host


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit((parts.scheme, f"{netloc}{port}", parts.path, "", ""))


def shown_url(url: str) -> str:
    """The address others use: a server on every interface shows the network address."""
    return _with_host(url, lan_address()) if urlsplit(url).hostname in ANY_HOSTS else url


def local_url(url: str) -> str:
    """The address this computer's browser uses."""
    return _with_host(url, "127.0.0.1") if urlsplit(url).hostname in ANY_HOSTS else url


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
        #: Where the next start listens (OPHTHAI_API_HOST until the clinician chooses).
        self.host = settings.api_host
        self.token: str | None = settings.api_token
        self._saved = (self.host, self.token)  # the Settings' choice, to notice changes
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
            dialog.host_chosen.connect(self.set_host)
            dialog.generate_requested.connect(self.generate_token)
            dialog.copy_requested.connect(self.copy_token)
            self.dialog = dialog
            dialog.set_choices(listen_choices(own_addresses()))
            dialog.set_host(self.host)
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
        dialog.token.setText(self.token or "")
        dialog.copy_button.setEnabled(bool(self.token))
        if self._control is None:
            dialog.show_hint("This window was started without a server to control.")

    @Slot(object)
    def follow_settings(self, settings: Settings) -> None:
        """Take the address and token just saved in Settings for the next start, when
        they changed (a token generated here and not saved there is kept otherwise)."""
        saved = (settings.api_host, settings.api_token)
        if saved != self._saved:
            self._saved = saved
            self.host, self.token = saved
            if self.dialog is not None:
                self.dialog.set_host(self.host)
            self._refresh()

    # Actions (GUI thread) ------------------------------------------------------------------

    def _checked_host(self, text: str) -> str:
        """The address ``text`` names, if the server may listen there now.

        Raises:
            InvalidInput: Not this computer's address, or one on the network while
                there is no usable token.
        """
        own = [address for address, _interface in own_addresses()]
        host = listen_host(text, own)
        check_api_binding(host, self.token)
        return host

    @Slot(str)
    def set_host(self, text: str) -> None:
        """The address picked or typed in the dialog: taken for the next start, or
        refused with the reason (the text stays, to be corrected)."""
        dialog = self.dialog
        try:
            host = self._checked_host(text)
        except OphthaiError as exc:
            if dialog is not None:
                dialog.mark_host(valid=False)
                hint = describe(exc)
                if exc.field == "api_token":
                    hint = f"{hint}. Generate a token first.".replace("..", ".")
                dialog.show_hint(hint, "error")
            return
        self.host = host
        if dialog is None:
            return
        dialog.mark_host(valid=True)
        dialog.show_hint(
            "Only programs on this computer can connect."
            if is_loopback_host(host)
            else "Other computers can connect with the token once the server (re)starts."
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
        dialog = self.dialog
        if dialog is not None and dialog.host_text().strip():
            # What the field says, even if Enter was not pressed after typing it.
            self.set_host(dialog.host_text())
            if dialog.host.property("invalid"):
                return  # the reason is in the hint
        options = ServerOptions(host=self.host, token=self.token or None)
        try:
            check_api_binding(options.host, options.token)
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
        log.info("API server started from the window on %s", self.host)
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
