"""PySide6 6.12.0 crashes CPython 3.11 after ~500 Signal.emit calls (each drops a
reference to True). The pinned 6.11.3 must survive thousands, including bool payloads
and cross-thread queued emits."""

from __future__ import annotations

import threading

from PySide6.QtCore import QObject, Signal
from pytestqt.qtbot import QtBot


class _Emitter(QObject):
    flagged = Signal(bool)
    counted = Signal(int)


def test_thousands_of_emits_survive(qtbot: QtBot) -> None:
    emitter = _Emitter()
    received: list[bool] = []
    emitter.flagged.connect(received.append)
    for i in range(20_000):
        emitter.flagged.emit(i % 2 == 0)
    assert len(received) == 20_000
    assert received[:4] == [True, False, True, False]


def test_queued_emits_from_a_worker_thread(qtbot: QtBot) -> None:
    emitter = _Emitter()
    received: list[int] = []
    emitter.counted.connect(received.append)  # auto connection: queued across threads

    def work() -> None:
        for i in range(5_000):
            emitter.counted.emit(i)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: len(received) == 5_000)
    assert received == list(range(5_000))
