"""WebSocket hub: forwards bus events to connected clients as ``{"event", "data"}``.

Bus subscribers run on the publisher's thread; the hub only schedules the event onto
the server's loop (``call_soon_threadsafe``). There each frame is encoded once for all
clients reached at the same address. Each client has a bounded queue: a client that
falls behind by more than ``max_queue`` frames is disconnected rather than waited for,
so one slow browser never holds up the others or the publishers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from ophthai_desktop.core.events import Event, EventBus
from ophthai_desktop.core.log_safety import safe_description

log = logging.getLogger(__name__)

#: Turns an event into frame data for a client reached at ``base_url``; None skips it.
Serializer = Callable[[Event, str], dict[str, Any] | None]


#: How long closing a dropped client may take before its connection is simply cut.
CLOSE_TIMEOUT_S = 1.0


@dataclass(eq=False)
class _Client:
    socket: WebSocket
    base_url: str
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(maxsize=256))
    dropped: bool = False
    sender: asyncio.Task[None] | None = None


class WebSocketHub:
    """Fans bus events out to WebSocket clients on the server's event loop."""

    def __init__(self, bus: EventBus, serializer: Serializer, *, max_queue: int = 256) -> None:
        self._bus = bus
        self._serializer = serializer
        self._max_queue = max_queue
        self._clients: set[_Client] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Subscribe to the bus; called on the server loop at start-up."""
        self._loop = loop
        self._unsubscribe = self._bus.subscribe(self._on_event)

    async def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
            self._unsubscribe = None
        for client in list(self._clients):
            self._drop(client)
        self._loop = None

    def _on_event(self, event: Event) -> None:
        """Bus subscriber (any thread): hand the event to the loop, nothing more."""
        loop = self._loop
        if loop is None or not self._clients:
            return
        with contextlib.suppress(RuntimeError):  # the loop closed while shutting down
            loop.call_soon_threadsafe(self._dispatch, event)

    def _dispatch(self, event: Event) -> None:
        """Runs on the loop: encode once per base URL and enqueue for every client.

        An event that cannot be encoded is logged and skipped; it never reaches (and so
        never breaks) a client's stream.
        """
        frames: dict[str, str | None] = {}
        for client in list(self._clients):
            if client.base_url not in frames:
                try:
                    data = self._serializer(event, client.base_url)
                    frames[client.base_url] = (
                        None
                        if data is None
                        else json.dumps({"event": event.name, "data": data}, ensure_ascii=False)
                    )
                except Exception as exc:  # its text may quote a patient's record
                    log.error(
                        "could not serialise %s: %s", type(event).__name__, safe_description(exc)
                    )
                    frames[client.base_url] = None
            frame = frames[client.base_url]
            if frame is None:
                continue
            try:
                client.queue.put_nowait(frame)
            except asyncio.QueueFull:
                log.warning("dropping a WebSocket client %d frames behind", self._max_queue)
                self._drop(client, too_slow=True)

    def _drop(self, client: _Client, *, too_slow: bool = False) -> None:
        self._clients.discard(client)
        client.dropped = client.dropped or too_slow
        # Make room for the sentinel that ends the client's sender.
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(None)
        if too_slow and client.sender is not None:
            # Its sender may be stuck in a send that waits for the client's network
            # buffer to drain, possibly forever: stop waiting.
            client.sender.cancel()

    async def serve(self, socket: WebSocket, base_url: str) -> None:
        """Serve one accepted client until it disconnects or is dropped.

        A client dropped for being too slow is closed with 1013 (try again later), or,
        when even that cannot be sent in time, its connection ends with this call.
        """
        client = _Client(socket, base_url, asyncio.Queue(maxsize=self._max_queue))
        self._clients.add(client)
        receiver = asyncio.create_task(self._receive(client))
        client.sender = asyncio.create_task(self._send(client))
        try:
            await asyncio.wait({client.sender})
        finally:
            self._clients.discard(client)
            for task in (client.sender, receiver):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if client.dropped:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        socket.close(code=1013, reason="client too slow"), CLOSE_TIMEOUT_S
                    )

    async def _send(self, client: _Client) -> None:
        """Send the greeting, then the client's queued frames until the sentinel."""
        greeting = {"event": "connected", "data": {"clients": len(self._clients)}}
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, ConnectionError):
            await client.socket.send_text(json.dumps(greeting))
            while (frame := await client.queue.get()) is not None:
                await client.socket.send_text(frame)

    async def _receive(self, client: _Client) -> None:
        """Read (and answer pings from) the client so a disconnect is noticed. Any other
        message, a binary one included, is read and ignored: ``receive_text`` raised on
        a binary frame, which ended the connection without a close frame."""
        try:
            while True:
                message = await client.socket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is not None and _is_ping(text):
                    # Through the queue: only the sender task writes to the socket.
                    client.queue.put_nowait(PONG)
        except Exception:
            pass
        finally:
            if client in self._clients:
                self._drop(client)


PONG = '{"event": "pong", "data": {}}'


def _is_ping(text: str) -> bool:
    """``ping``, or a ``{"event": "ping"}`` frame."""
    if text.strip().lower() == "ping":
        return True
    try:
        message = json.loads(text)
    except ValueError:
        return False
    return isinstance(message, dict) and message.get("event") == "ping"
