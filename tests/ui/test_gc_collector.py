"""Garbage is collected on the GUI thread only while a window runs (ui/gc_collector.py):
a cycle holding a Qt object destroyed on another thread can hang the process."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.inference.engine import ModelState
from ophthai_desktop.ui.gc_collector import MainThreadCollector
from tests.ui.conftest import Maker


class _Cycle:
    """A reference cycle that says on which thread it was destroyed."""

    def __init__(self, seen: list[str]) -> None:
        self.me = self
        self.seen = seen

    def __del__(self) -> None:
        self.seen.append(threading.current_thread().name)


@pytest.fixture
def collection_on() -> Iterator[None]:
    """Automatic collection on, as in the app before its window starts (the window's
    tests run with it off: tests/ui/conftest.py)."""
    gc.enable()
    try:
        yield
    finally:
        gc.disable()
        gc.collect()


def _garbage_from_a_busy_thread(seen: list[str], cycles: int = 50) -> list[Any]:
    """Cycles dropped on a thread that then allocates well past the collector's first
    threshold, as the worker or the API server does. Returns what it allocated: kept
    until the test has seen the collection (freed, it would take the collector's count
    back under the threshold before its timer looks, as Python's own count would go)."""
    keep: list[Any] = []

    def work() -> None:
        for _ in range(cycles):
            _Cycle(seen)
        for i in range(gc.get_threshold()[0] * 20):
            keep.append([i])  # containers: they count towards a collection

    thread = threading.Thread(target=work, name="busy-worker")
    thread.start()
    thread.join()
    return keep


@pytest.mark.usefixtures("collection_on")
def test_a_running_window_collects_garbage_on_the_gui_thread_only(
    qtbot: QtBot, make_gui: Maker
) -> None:
    gui = make_gui()
    assert not gc.isenabled()  # no other thread collects while the window runs
    seen: list[str] = []

    allocated = _garbage_from_a_busy_thread(seen)

    qtbot.waitUntil(lambda: len(seen) == 50, timeout=5_000)
    assert set(seen) == {threading.main_thread().name}
    del allocated
    gui.shutdown()
    assert gc.isenabled()  # as it was before the window


@pytest.mark.usefixtures("collection_on")
def test_collectors_turn_collection_back_on_when_the_last_stops(qtbot: QtBot) -> None:
    first, second = MainThreadCollector(), MainThreadCollector()
    first.start()
    second.start()
    first.stop()
    assert not gc.isenabled()
    second.stop()
    assert gc.isenabled()
    second.stop()  # twice: no effect
    assert gc.isenabled()


def test_the_collector_collects_when_python_would(qtbot: QtBot) -> None:
    collector = MainThreadCollector()
    collector.start()
    try:
        gc.collect()
        assert collector.collect_due() is None  # nothing allocated since
        seen: list[str] = []
        for _ in range(gc.get_threshold()[0] + 10):
            _Cycle(seen)
        assert collector.collect_due() == 0
        assert len(seen) == gc.get_threshold()[0] + 10
    finally:
        collector.stop()


def test_between_windows_too_only_the_gui_thread_collects(qtbot: QtBot) -> None:
    """The window's tests make and close hundreds of windows in one process: a closed
    one in a reference cycle, collected by the next test's API or watcher thread, left
    its timers to Qt's GUI thread, which then crashed delivering one (tests/ui/conftest.py,
    ``_garbage_collected_on_the_gui_thread``)."""
    assert not gc.isenabled()
    seen: list[str] = []

    _garbage_from_a_busy_thread(seen)

    assert seen == []  # the busy thread did not collect
    gc.collect()
    assert set(seen) == {threading.main_thread().name}


def test_a_dropped_models_garbage_is_collected_on_the_gui_thread(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path
) -> None:
    """A failed load (and an unload) collected every cycle in the process on the
    worker's thread, the window's garbage too: a Qt object destroyed there leaves its
    timers to the GUI thread, which crashes delivering one."""
    gui = make_gui(model_path=tiny_checkpoint, device="cpu", quantization="4bit")  # no CUDA
    seen: list[str] = []
    cycles = [_Cycle(seen) for _ in range(20)]
    gc.collect()  # now old: only a full collection, such as the engine's, frees them
    del cycles

    gui.application.worker.request_load()

    engine = gui.application.engine
    qtbot.waitUntil(lambda: engine.status().state is ModelState.ERROR, timeout=30_000)
    qtbot.waitUntil(lambda: len(seen) == 20)
    assert set(seen) == {threading.main_thread().name}
