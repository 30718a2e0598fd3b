"""The day changing under a window left open (all day, or for days in the tray)."""

from __future__ import annotations

from datetime import date

from PySide6.QtCore import QDate, QDateTime, QObject, Qt, QTime, QTimer, Signal, Slot
from PySide6.QtGui import QGuiApplication

#: The longest wait between two looks at the date. Qt's timers do not count the time a
#: computer sleeps, nor follow the clock being set: a day that began meanwhile is
#: noticed within this (at once when the application comes back to the front).
LOOK_AT_LEAST_EVERY_MS = 3_600_000
#: How long after midnight the date is looked at: a timer a few milliseconds early
#: still saw the day before.
PAST_MIDNIGHT_MS = 1_000


def today() -> QDate:
    """This computer's date now."""
    return QDate.currentDate()


def python_date(day: QDate) -> date:
    """``day`` as a Python date (``QDate.toPython`` is typed as returning any object)."""
    return date(day.year(), day.month(), day.day())


class DayWatch(QObject):
    """Says when the local date changed: looks at midnight (at least hourly) and when
    the application comes back to the front. Wakes the GUI thread for nothing else.

    Signals:
        day_changed(QDate): the date is now this one.
    """

    day_changed = Signal(QDate)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.day = today()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.look)
        app = QGuiApplication.instance()
        if isinstance(app, QGuiApplication):
            app.applicationStateChanged.connect(self._on_application_state_changed)
        self._arm()

    def next_look_ms(self) -> int:
        """How long the timer was set to wait: until just past midnight, at most an
        hour."""
        return self._timer.interval()

    @Slot()
    def look(self) -> None:
        """Tell of a new day, if it is one, and wait for the next."""
        day = today()
        if day != self.day:
            self.day = day
            self.day_changed.emit(day)
        self._arm()

    def _arm(self) -> None:
        now = QDateTime.currentDateTime()
        midnight = QDateTime(now.date().addDays(1), QTime(0, 0))
        wait_ms = now.msecsTo(midnight) + PAST_MIDNIGHT_MS
        self._timer.start(max(PAST_MIDNIGHT_MS, min(wait_ms, LOOK_AT_LEAST_EVERY_MS)))

    @Slot(Qt.ApplicationState)
    def _on_application_state_changed(self, state: Qt.ApplicationState) -> None:
        if state == Qt.ApplicationState.ApplicationActive:
            self.look()
