"""Starting and stopping the embedded API server from the window.

``ui`` does not import ``api``: the launcher (:mod:`ophthai_desktop.desktop`) owns the
server and hands the window a :class:`ServerControl` of plain callables. They block
(binding a port, waiting for open requests to finish), so they run on the task pool.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import secrets
import socket
import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtNetwork import QAbstractSocket, QNetworkInterface

from ophthai_desktop.core.addresses import ANY_HOSTS, LAN_HOST, local_url, shown_url
from ophthai_desktop.core.errors import InvalidInput, OphthaiError
from ophthai_desktop.core.settings import Settings, check_api_binding, is_loopback_host
from ophthai_desktop.ui.context import ApiState, GuiContext
from ophthai_desktop.ui.messages import describe
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.server_dialog import ServerDialog

log = logging.getLogger(__name__)

#: Bytes of randomness in a generated token (32 characters).
TOKEN_BYTES = 24
#: How long a host name typed in the dialog may take to look up before it is refused.
LOOKUP_TIMEOUT_S = 3.0
#: A host name: dot-separated labels of letters, digits, hyphens (and underscores,
#: which some networks' names have), the last one not all digits: ``192.168.1.300``
#: is a mistyped address, not a name.
_LABEL = r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)"
_HOST_NAME = re.compile(rf"(?:{_LABEL}\.)*(?=[0-9-]*[A-Za-z_]){_LABEL}\.?")


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


def _typed_host(text: str) -> str:
    """The address or name typed or picked: ``"192.168.1.20  (eth0)"`` reads as its
    first word."""
    words = text.split()
    host = words[0].strip("[]") if words else ""
    if not host:
        raise InvalidInput("give the address to listen on, such as 127.0.0.1", field="api_host")
    return host


def host_name(text: str) -> str | None:
    """The host name ``text`` names, to be looked up; None for an IP address or
    ``localhost``.

    Raises:
        InvalidInput: It is empty, or neither an IP address nor a host name.
    """
    host = _typed_host(text)
    if host.lower() == "localhost":
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    if len(host) > 253 or _HOST_NAME.fullmatch(host) is None:
        raise InvalidInput(
            f"{host!r} is not an IP address or a host name; choose one from the list or "
            "type one of this computer's, such as 127.0.0.1",
            field="api_host",
        )
    return host.rstrip(".")


def resolve_host(name: str, timeout_s: float | None = None) -> list[str]:
    """Task-pool thread: the addresses ``name`` resolves to, in the resolver's order.

    The lookup runs on a thread of its own and is given up after ``timeout_s``
    (:data:`LOOKUP_TIMEOUT_S` unless given; a resolver can wait far longer on a server
    that does not answer), so the pool's thread is not held, and quitting does not wait
    for it.

    Raises:
        InvalidInput: The name is unknown, or its lookup took longer than ``timeout_s``.
    """
    found: list[str] = []
    failed: list[OSError] = []

    def look_up() -> None:
        try:
            entries = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            failed.append(exc)
            return
        found.extend(dict.fromkeys(str(entry[4][0]) for entry in entries))

    if timeout_s is None:
        timeout_s = LOOKUP_TIMEOUT_S
    lookup = threading.Thread(target=look_up, name="api-host-lookup", daemon=True)
    lookup.start()
    lookup.join(timeout_s)
    if lookup.is_alive():
        raise InvalidInput(
            f"{name} could not be looked up within {timeout_s:g} s; type one of this "
            "computer's addresses instead, such as 127.0.0.1",
            field="api_host",
        )
    if failed or not found:
        raise InvalidInput(
            f"{name} is not a known host name (it could not be looked up); type one of "
            "this computer's addresses instead, such as 127.0.0.1",
            field="api_host",
        )
    return found


def resolved_host(name: str, addresses: Sequence[str], own: Collection[str]) -> str:
    """The first of the ``addresses`` that ``name`` resolves to that the server may
    listen on: a loopback one or one of ``own`` (the name itself is not listened on: it
    could resolve elsewhere by the time the server binds).

    Raises:
        InvalidInput: None of them is this computer's.
    """
    mine = _own_set(own)
    for found in addresses:
        address = ipaddress.ip_address(found.split("%")[0])
        if address.is_loopback or str(address) in mine:
            return str(address)
    raise InvalidInput(
        f"{name} is {', '.join(addresses)}, not an address of this computer; choose one "
        "from the list, or type a name of this computer",
        field="api_host",
    )


def _own_set(own: Collection[str]) -> set[str]:
    return {str(ipaddress.ip_address(a.split("%")[0])) for a in own}


def listen_host(text: str, own: Collection[str]) -> str:
    """The address typed or picked (``"192.168.1.20  (eth0)"`` reads as its first word),
    checked: loopback, every interface, or one of ``own``. A host name is looked up
    first (:func:`resolve_host`, :func:`resolved_host`).

    Raises:
        InvalidInput: It is not an IP address (or ``localhost``), or not this
            computer's.
    """
    host = _typed_host(text)
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
    if host not in _own_set(own):
        raise InvalidInput(
            f"{host} is not an address of this computer; choose one from the list",
            field="api_host",
        )
    return host


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
        #: Counts the addresses given: a host name's lookup that a later one overtook
        #: is not taken when it comes back.
        self._asked = 0
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
        if not self.dialog.isVisible():
            self.dialog.close_button.setFocus(Qt.FocusReason.OtherFocusReason)
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
        refused with the reason (the text stays, to be corrected). A host name is looked
        up on the task pool first."""
        if not self.busy:  # the field is disabled meanwhile (and left as it was)
            self._take_host(text, lambda _taken: None)

    def _take_host(self, text: str, then: Callable[[bool], None]) -> None:
        """Check ``text`` and take it for the next start, then ``then(taken)``; not
        called when a later address overtook a host name being looked up."""
        self._asked += 1
        asked = self._asked
        try:
            name = host_name(text)
        except OphthaiError as exc:
            self._refuse_host(exc)
            then(False)
            return
        if name is None:
            then(self._accept_host(text))
            return

        def looked_up(addresses: list[str]) -> None:
            if asked != self._asked:
                return
            own = [address for address, _interface in own_addresses()]
            try:
                host = resolved_host(name, addresses, own)
            except OphthaiError as exc:
                self._refuse_host(exc)
                then(False)
                return
            then(self._accept_host(host, name=name))

        def not_found(exc: BaseException) -> None:
            if asked == self._asked:
                self._refuse_host(exc)
                then(False)

        if self.dialog is not None:
            self.dialog.show_hint(f"Looking up {name}…")
        self._ctx.slow_tasks.submit(lambda: resolve_host(name), looked_up, not_found)

    def _accept_host(self, text: str, *, name: str | None = None) -> bool:
        """Take the address ``text`` if the server may listen there (``name`` is the
        host name it was looked up from); else say why. Returns whether it was taken."""
        try:
            host = self._checked_host(text)
        except OphthaiError as exc:
            self._refuse_host(exc)
            return False
        self.host = host
        dialog = self.dialog
        if dialog is None:
            return True
        dialog.mark_host(valid=True)
        hint = (
            "Only programs on this computer can connect."
            if is_loopback_host(host)
            else "Other computers can connect with the token once the server (re)starts."
        )
        dialog.show_hint(f"{name} is {host}. {hint}" if name else hint)
        return True

    def _refuse_host(self, exc: BaseException) -> None:
        dialog = self.dialog
        if dialog is None:
            return
        dialog.mark_host(valid=False)
        hint = describe(exc)
        if isinstance(exc, OphthaiError) and exc.field == "api_token":
            hint = f"{hint}. Generate a token first.".replace("..", ".")
        dialog.show_hint(hint, "error")

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
        if dialog is None or not dialog.host_text().strip():
            self._start_server(control)
            return

        def checked(taken: bool) -> None:
            self.busy = False
            if taken:
                self._start_server(control)
            else:
                self._refresh()  # the reason is in the hint

        # What the field says, even if Enter was not pressed after typing it (a host
        # name is looked up first: busy meanwhile).
        self.busy = True
        self._refresh()
        self._take_host(dialog.host_text(), checked)

    def _start_server(self, control: ServerControl) -> None:
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
