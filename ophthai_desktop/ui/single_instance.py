"""A second launch on the same data folder shows the running window instead.

The instance lock (``data_folder.instance_lock``) keeps a second window off a data folder.
On its own it could only refuse the launch and tell the clinician to find the running
window, which may be hidden in the tray. So the running app also listens on a local
socket (a Unix socket, or a named pipe on Windows) and a second launch asks it to show
its window before giving up.

The socket's name is random and written next to the lock (``ophthai-desktop.socket``),
so a launch finds it through the data folder whatever path it was given, and nobody
can take the name in advance. On Linux the socket lies in ``$XDG_RUNTIME_DIR`` (only
the user can enter it), elsewhere in Qt's temporary folder; either way only the same
user can connect. The exchange is one line each way: ``show`` and ``shown``. The
answer comes only once there is a window to show, and the app stops listening (and
removes the name) as soon as it starts closing, so a launch during a slow shutdown
waits for the lock instead.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

from ophthai_desktop.core.storage.private import replace_private_file

log = logging.getLogger(__name__)

#: The file in the data folder that holds the running app's socket name.
SOCKET_FILE = "ophthai-desktop.socket"
SHOW = b"show\n"
SHOWN = b"shown\n"
#: The names :func:`new_socket_name` makes: only such a name is asked or removed.
SOCKET_NAME = re.compile(r"ophthai-desktop-[0-9a-f]{16}")
#: How long one request waits for its answer (the running app may be starting, its
#: event loop not yet running); the launch asks again while it waits for the lock.
ANSWER_TIMEOUT_MS = 3000


def new_socket_name() -> str:
    """A fresh, unguessable name, as a path in the user's runtime folder where there is
    one (Linux), else a bare name (Qt's temporary folder, or a pipe on Windows)."""
    name = f"ophthai-desktop-{secrets.token_hex(8)}"
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if sys.platform != "win32" and runtime and Path(runtime).is_dir():
        return str(Path(runtime) / name)
    return name


def read_socket_name(data_dir: Path) -> str | None:
    """The name the app running on ``data_dir`` listens on, if one does.

    Only a name of :func:`new_socket_name`'s making counts: the data folder may be
    shared (``OPHTHAI_DATA_DIR``), and a stale name is handed to
    ``QLocalServer.removeServer``, which deletes whatever file the name gives.
    """
    try:
        name = (data_dir / SOCKET_FILE).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    path = Path(name)
    if not SOCKET_NAME.fullmatch(path.name) or not (path.is_absolute() or name == path.name):
        return None
    return name


class InstanceServer(QObject):
    """Listens for later launches on one data folder (GUI thread).

    ``ready`` is set once there is a window to show; until then a request gets no
    answer (the asking launch then waits for the lock).

    Signals:
        show_requested(): a second launch asked for the window.
    """

    show_requested = Signal()

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.data_dir = data_dir
        self.name = ""
        self.ready = False
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._on_new_connection)

    def listen(self) -> bool:
        """Listen on a new name and write it into the data folder; False (and a warning)
        when that fails. Call it holding the instance lock: a socket named in the folder
        is then one a crash left behind, and is removed first."""
        stale = read_socket_name(self.data_dir)
        if stale is not None:
            QLocalServer.removeServer(stale)
        self.name = new_socket_name()
        if not self._server.listen(self.name):
            log.warning("a second launch cannot show this window: %s", self._server.errorString())
            return False
        try:
            # The owner's only, whatever the umask: the folder may be shared.
            replace_private_file(self.data_dir / SOCKET_FILE, self.name.encode("utf-8"))
        except OSError as exc:
            log.warning("a second launch cannot show this window: %s", exc.strerror)
            self._server.close()
            return False
        return True

    def close(self) -> None:
        """Stop listening and remove the name; later launches wait for the lock."""
        if not self._server.isListening():
            return
        self._server.close()
        if read_socket_name(self.data_dir) == self.name:
            (self.data_dir / SOCKET_FILE).unlink(missing_ok=True)

    @Slot()
    def _on_new_connection(self) -> None:
        while (socket := self._server.nextPendingConnection()) is not None:
            socket.readyRead.connect(lambda s=socket: self._on_ready_read(s))
            socket.disconnected.connect(socket.deleteLater)
            if socket.canReadLine():
                self._on_ready_read(socket)

    def _on_ready_read(self, socket: QLocalSocket) -> None:
        if not socket.canReadLine():
            if socket.bytesAvailable() > len(SHOW):
                socket.abort()  # not one of ours
            return
        line = bytes(socket.readLine().data())
        if line == SHOW and self.ready and self._server.isListening():
            log.info("a second launch on this data folder asked for the window")
            self.show_requested.emit()
            socket.write(SHOWN)
            socket.flush()
        socket.disconnectFromServer()


def ask_to_show(data_dir: Path, timeout_ms: int = ANSWER_TIMEOUT_MS) -> bool:
    """Ask the app running on ``data_dir`` to show its window; True once it said it did.

    Blocks (for a launch that has no window yet). False when nobody listens, or nobody
    answered within ``timeout_ms``.
    """
    name = read_socket_name(data_dir)
    if name is None:
        return False
    deadline = time.monotonic() + timeout_ms / 1000
    socket = QLocalSocket()
    socket.connectToServer(name)
    try:
        if not socket.waitForConnected(timeout_ms):
            return False
        socket.write(SHOW)
        socket.flush()
        while not socket.canReadLine():
            left = int((deadline - time.monotonic()) * 1000)
            if left <= 0 or not socket.waitForReadyRead(left):
                return False
        return bytes(socket.readLine().data()) == SHOWN
    finally:
        socket.abort()
