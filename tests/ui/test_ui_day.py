"""The day changing under a window left open."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QDate, QDateTime, QTime
from pytestqt.qtbot import QtBot

from ophthai_desktop.ui import day
from ophthai_desktop.ui.day import LOOK_AT_LEAST_EVERY_MS, PAST_MIDNIGHT_MS, DayWatch


def test_a_new_day_is_told_once(qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    yesterday = QDate.currentDate().addDays(-1)
    with monkeypatch.context() as clock:
        clock.setattr(day, "today", lambda: yesterday)
        watch = DayWatch()
    with qtbot.assertNotEmitted(watch.day_changed), monkeypatch.context() as clock:
        clock.setattr(day, "today", lambda: yesterday)
        watch.look()  # still the same day

    with qtbot.waitSignal(watch.day_changed) as changed:
        watch.look()
    assert changed.args == [QDate.currentDate()]
    with qtbot.assertNotEmitted(watch.day_changed):
        watch.look()  # told already


def test_the_date_is_looked_at_just_past_midnight_or_within_the_hour(qtbot: QtBot) -> None:
    now = QDateTime.currentDateTime()
    watch = DayWatch()
    to_midnight = now.msecsTo(QDateTime(now.date().addDays(1), QTime(0, 0)))
    expected = min(to_midnight + PAST_MIDNIGHT_MS, LOOK_AT_LEAST_EVERY_MS)
    assert expected - 1_000 <= watch.next_look_ms() <= expected
