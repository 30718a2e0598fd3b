"""A second launch on the same data folder brings the running window to the front.

The instance lock (``desktop.instance_lock``) keeps a second window off a data folder.
On its own it could only refuse the launch and tell the clinician to find the running
window, which may be hidden in the tray. So the running app also listens on a local
socket (a Unix socket, or a named pipe on Windows), named after the data folder and the
user, and a second launch asks it to show its window before giving up.

The exchange is one line each way: ``show`` and ``shown``. Only the same user can
connect. The running app stops listening as soon as it starts closing, so a launch
during a slow shutdown finds nobody listening and waits for the lock instead.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

SHOW = b"show\n"
SHOWN = b"shown\n"
#: How long a second launch waits for the running app to answer: the running app may
#: still be starting (building its services before its event loop runs).
ANSWER_TIMEOUT_MS = 15_000


def server_name(data_dir: Path) -> str:
    """The socket's name for ``data_dir`` and this user (no path or name in clear)."""
    user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "")
    key = f"{data_dir.resolve()}\0{user}".encode()
    return f"ophthai-desktop-{hashlib.sha256(key).hexdigest()[:16]}"


class InstanceServer(QObject):
    """Listens for later launches on the same data folder (GUI thread).

    Signals:
        show_requested(): a second launch asked for the window.
    """

    show_requested = Signal()

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name
        self._server = QLocalServer(self)
        self._server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        self._server.newConnection.connect(self._on_new_connection)

    def listen(self) -> bool:
        """Start listening; False (and a warning) when the socket cannot be made.

        Call it holding the instance lock: a socket of the same name is then one a crash
        left behind, and is removed first.
        """
        QLocalServer.removeServer(self.name)
        if self._server.listen(self.name):
            return True
        log.warning(
            "a second launch cannot bring this window forward: %s", self._server.errorString()
        )
        return False

    def close(self) -> None:
        """Stop listening; later launches find nobody and wait for the lock."""
        self._server.close()

    def is_listening(self) -> bool:
        return self._server.isListening()

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
        if line == SHOW and self._server.isListening():
            log.info("a second launch on this data folder asked for the window")
            self.show_requested.emit()
            socket.write(SHOWN)
            socket.flush()
        socket.disconnectFromServer()


def ask_to_show(name: str, timeout_ms: int = ANSWER_TIMEOUT_MS) -> bool:
    """Ask the app listening on ``name`` to show its window; True once it said it did.

    Blocks (for a launch that has no window yet). False when nobody listens, or nobody
    answered within ``timeout_ms``.
    """
    deadline = time.monotonic() + timeout_ms / 1000
    socket = QLocalSocket()
    socket.connectToServer(name)
    try:
        if not socket.waitForConnected(min(timeout_ms, 2000)):
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
