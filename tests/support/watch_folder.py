"""Helpers for watch-folder tests: an application whose watcher runs at test speed, a
thread-safe log of bus events, bounded waiting, and image files made in memory."""

from __future__ import annotations

import io
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from PIL import Image

from ophthai_desktop.bootstrap import Application, build_application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.services.ingest import FolderLayout
from ophthai_desktop.core.watcher import FolderWatcher
from tests.conftest import make_settings

E = TypeVar("E", bound=ev.Event)

WAIT_S = 10.0


def wait_until(predicate: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    """Poll ``predicate`` every 20 ms until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)


@dataclass(frozen=True)
class HungShare:
    """The watch folder's set-up held as by a network share that does not answer:
    every call waits until ``answer`` is set (30 s at most, so that a failing test
    ends); ``trying`` is set once one waits."""

    answer: threading.Event = field(default_factory=threading.Event)
    trying: threading.Event = field(default_factory=threading.Event)


def hang_the_share(monkeypatch: pytest.MonkeyPatch) -> HungShare:
    """Hold :meth:`FolderLayout.ensure` (making and checking the watch folder, its
    ``processed/`` and ``failed/``) until the returned share answers."""
    share = HungShare()
    ensure = FolderLayout.ensure

    def hung(self: FolderLayout, *, create_root: bool = True) -> None:
        share.trying.set()
        share.answer.wait(30)
        ensure(self, create_root=create_root)

    monkeypatch.setattr(FolderLayout, "ensure", hung)
    return share


def build_watch_app(tmp_path: Path, *, polling: bool = True, **overrides: object) -> Application:
    """The application with the watch folder enabled (not started). The polling observer
    checks every 50 ms; an empty file waits 0.3 s instead of 2 s; rescans every 0.5 s;
    a watch folder that fails is tried again after 0.2 s, doubling up to 0.8 s."""
    settings = make_settings(
        tmp_path,
        watch_folder_enabled=True,
        watch_use_polling=polling,
        watch_poll_seconds=0.05,
        **overrides,
    )
    application = build_application(settings)
    application.watcher = FolderWatcher(
        settings,
        application.ingest,
        application.bus,
        empty_grace_s=0.3,
        rescan_interval_s=0.5,
        notifications=application.notifications,
        retry_first_s=0.2,
        retry_max_s=0.8,
    )
    return application


class EventLog:
    """Every event published on a bus, kept for assertions (any thread may publish)."""

    def __init__(self, bus: ev.EventBus) -> None:
        self._lock = threading.Lock()
        self._events: list[ev.Event] = []
        self.unsubscribe = bus.subscribe(self._append)

    def _append(self, event: ev.Event) -> None:
        with self._lock:
            self._events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        with self._lock:
            return [e for e in self._events if isinstance(e, kind)]

    def finished(self) -> dict[str, ev.IngestFinished]:
        """The ingest outcomes so far, by file name."""
        return {e.file_name: e for e in self.of(ev.IngestFinished)}

    def wait_finished(self, *names: str, timeout_s: float = WAIT_S) -> dict[str, ev.IngestFinished]:
        """Wait until every named file has an outcome; fails the test otherwise."""
        ok = wait_until(lambda: set(names) <= set(self.finished()), timeout_s)
        done = self.finished()
        assert ok, f"no outcome for {sorted(set(names) - set(done))} within {timeout_s} s"
        return done


def noise_png(size: tuple[int, int] = (200, 150), seed: int = 0) -> bytes:
    """A PNG of random pixels (compresses poorly, so it is about 3 bytes a pixel)."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def write_in_chunks(path: Path, data: bytes, *, chunks: int, gap_s: float) -> threading.Thread:
    """Write ``data`` to ``path`` in ``chunks`` pieces ``gap_s`` apart on a thread, keeping
    the file open throughout, as a slow copy does. Returns the started thread."""

    def write() -> None:
        step = -(-len(data) // chunks)
        with path.open("wb") as handle:
            for start in range(0, len(data), step):
                handle.write(data[start : start + step])
                handle.flush()
                time.sleep(gap_s)

    thread = threading.Thread(target=write, name="slow-writer")
    thread.start()
    return thread
