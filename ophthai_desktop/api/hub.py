"""WebSocket hub: forwards bus events to connected clients as ``{"event", "data"}``.

Bus subscribers run on the publisher's thread; the hub only schedules the event onto
the server's loop (``call_soon_threadsafe``). Each client has a bounded queue: a client
that falls behind by more than ``max_queue`` frames is disconnected rather than waited
for, so one slow browser never holds up the others or the publishers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect

from ophthai_desktop.core.events import Event, EventBus

log = logging.getLogger(__name__)

#: Turns an event into frame data for a client reached at ``base_url``; None skips it.
Serializer = Callable[[Event, str], dict[str, Any] | None]


@dataclass(eq=False)
class _Client:
    socket: WebSocket
    base_url: str
    queue: asyncio.Queue[dict[str, Any] | None] = field(
        default_factory=lambda: asyncio.Queue(maxsize=256)
    )
    dropped: bool = False


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
        """Runs on the loop: serialise once per base URL and enqueue for every client."""
        frames: dict[str, dict[str, Any] | None] = {}
        for client in list(self._clients):
            if client.base_url not in frames:
                try:
                    data = self._serializer(event, client.base_url)
                except Exception:
                    log.exception("could not serialise %s", type(event).__name__)
                    return
                frames[client.base_url] = (
                    None if data is None else {"event": event.name, "data": data}
                )
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

    async def serve(self, socket: WebSocket, base_url: str) -> None:
        """Serve one accepted client until it disconnects or is dropped."""
        client = _Client(socket, base_url, asyncio.Queue(maxsize=self._max_queue))
        self._clients.add(client)
        receiver = asyncio.create_task(self._receive(client))
        try:
            await socket.send_json({"event": "connected", "data": {"clients": len(self._clients)}})
            while True:
                frame = await client.queue.get()
                if frame is None:
                    break
                await socket.send_json(frame)
        except (WebSocketDisconnect, RuntimeError, ConnectionError):
            pass
        finally:
            self._clients.discard(client)
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
            if client.dropped:
                with contextlib.suppress(Exception):
                    await socket.close(code=1013, reason="client too slow")

    async def _receive(self, client: _Client) -> None:
        """Read (and answer pings from) the client so a disconnect is noticed."""
        try:
            while True:
                text = await client.socket.receive_text()
                if text.strip().lower() in ("ping", '{"event":"ping"}'):
                    await client.socket.send_json({"event": "pong", "data": {}})
        except Exception:
            pass
        finally:
            if client in self._clients:
                self._drop(client)
