"""The job queue's item model: running, queued and finished analyses, in that order
(held in Qt's own item model, :mod:`.rows`, so that painting the queue runs no Python)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QStandardItem

from ophthai_desktop.core.domain import JobPriority
from ophthai_desktop.core.records import JobRecord
from ophthai_desktop.ui.display import local_datetime
from ophthai_desktop.ui.models.rows import RowModel

HEADERS = ("Job", "Patient", "State", "Priority", "Progress", "Queued", "Note")
#: What the Priority column says of a job, and its tooltip: the worker takes every
#: analysis someone asked for before the watch folder's.
PRIORITY_TEXTS: dict[int, str] = {
    JobPriority.INTERACTIVE: "Requested",
    JobPriority.BACKGROUND: "Watch folder",
}
PRIORITY_TIPS: dict[int, str] = {
    JobPriority.INTERACTIVE: (
        "Asked for in the window or by a client: runs before the watch folder's analyses"
    ),
    JobPriority.BACKGROUND: (
        "Queued by the watch folder: runs after every analysis someone asked for "
        "(Analyse on the patient moves it ahead)"
    ),
}
STATE_COLORS = {
    "queued": QColor("#5b6b75"),
    "running": QColor("#0f6e8c"),
    "done": QColor("#2e7d32"),
    "failed": QColor("#c62828"),
    "cancelled": QColor("#757575"),
}
#: The same on the dark theme's table (the light ones were 2.6 to 3.2:1 on it).
DARK_STATE_COLORS = {
    "queued": QColor("#9aa7b0"),
    "running": QColor("#6cc3de"),
    "done": QColor("#81c995"),
    "failed": QColor("#f28b82"),
    "cancelled": QColor("#a3a3a3"),
}
OPEN_STATES = ("queued", "running")
STATE_COLUMN = 2
PRIORITY_COLUMN = 3
#: Rows the queue keeps over a long session: past this, the finished jobs that ended
#: first are dropped (open ones always stay). A day of watch-folder files would
#: otherwise grow it without end, and every job event looks through it.
MAX_SHOWN = 500


@dataclass(frozen=True)
class JobRow:
    job_id: int
    patient_id: str | None
    state: str
    tokens: int
    queued_at: str
    note: str
    patient_name: str | None = None  # shown instead of the id once known
    #: A :class:`JobPriority`; None while not known (a job heard of by its start).
    priority: int | None = None
    #: When the job was queued and, once it ended, when it ended (POSIX seconds): where
    #: the row goes (see :func:`order`).
    queued_time: float = 0.0
    finished_time: float | None = None

    @property
    def cells(self) -> tuple[str, ...]:
        if self.state == "running":
            progress = _tokens(self.tokens) if self.tokens else "starting…"
        elif self.state == "done":  # the state is its own column
            progress = _tokens(self.tokens) if self.tokens else ""
        else:
            progress = ""
        return (
            f"#{self.job_id}",
            self.patient_name or self.patient_id or "(no patient)",
            self.state,
            PRIORITY_TEXTS.get(self.priority, "") if self.priority is not None else "",
            progress,
            self.queued_at,
            self.note,
        )


def job_row(job: JobRecord, tokens: int = 0, patient_name: str | None = None) -> JobRow:
    finished = None
    if job.state not in OPEN_STATES:
        finished = (job.finished_at or job.created_at).timestamp()
    return JobRow(
        job.id,
        job.patient_id,
        job.state,
        tokens,
        local_datetime(job.created_at),
        job.error or "",
        patient_name,
        job.priority,
        job.created_at.timestamp(),
        finished,
    )


def new_job_row(
    job_id: int,
    patient_id: str | None,
    patient_name: str | None = None,
    *,
    priority: int | None = None,
    created_at: datetime | None = None,
) -> JobRow:
    """A row for a job we only know from an event (its queueing, or its start);
    ``created_at``: when it was queued, where the event says (else now)."""
    queued = created_at or datetime.now().astimezone()
    return JobRow(
        job_id,
        patient_id,
        "queued",
        0,
        local_datetime(queued),
        "",
        patient_name,
        priority,
        queued.timestamp(),
    )


#: Sorts before every finished job's :func:`order` and after every open one's.
FINISHED_FIRST: tuple[float, ...] = (2,)


def order(row: JobRow) -> tuple[float, ...]:
    """Where a row goes in the queue: the running jobs, then the queued ones in the
    order the worker takes them (``JobService.claim_next``: the highest priority, then
    the oldest, then the lowest id; a priority not known yet counts as the lowest), then
    the finished ones, the last to end first."""
    if row.state in OPEN_STATES:
        group = 0 if row.state == "running" else 1
        return (group, -(row.priority or 0), row.queued_time, row.job_id)
    ended = row.finished_time if row.finished_time is not None else row.queued_time
    return (2, -ended, -row.job_id)


def in_order(rows: Sequence[JobRow]) -> list[JobRow]:
    """``rows`` as the queue shows them (see :func:`order`), each that ended saying
    when."""
    return sorted((_ended(row) for row in rows), key=order)


class JobTableModel(RowModel):
    """Jobs in the order a clinician needs them (see :func:`order`): what runs now at
    the top, then what runs next, then what ended, however long the backlog. A row
    moves as its job changes (starts, ends, moves ahead), keeping the selection.

    Signals:
        states_changed(): a job was added or removed or its state changed (what can be
            cancelled may have changed).
    """

    states_changed = Signal()

    def __init__(self, parent: Any = None) -> None:
        super().__init__(HEADERS, parent)
        self._state_colors = STATE_COLORS

    def set_dark(self, dark: bool) -> None:
        """Colour the states for a dark (or light) table; every row is recoloured."""
        colors = DARK_STATE_COLORS if dark else STATE_COLORS
        if colors is self._state_colors:
            return
        self._state_colors = colors
        for position in range(self.rowCount()):
            row = self.row_at(position)
            if row is not None:
                color = colors.get(row.state)
                self.item(position, STATE_COLUMN).setData(color, Qt.ItemDataRole.ForegroundRole)

    def key(self, row: JobRow) -> int:
        return row.job_id

    def cells(self, row: JobRow) -> tuple[str, ...]:
        return row.cells

    def style(self, items: Sequence[QStandardItem], row: JobRow, old: JobRow | None) -> None:
        if old is None or old.state != row.state:
            color = self._state_colors.get(row.state)
            items[STATE_COLUMN].setData(color, Qt.ItemDataRole.ForegroundRole)
        if old is None or old.note != row.note:
            # Why a job failed (or that its answer could not be read) is in the Note
            # column, the first to give way in a narrow queue (as at 1440 x 900): its
            # state says it too, on hover.
            note = row.note if row.note != row.state else ""
            items[STATE_COLUMN].setToolTip(f"{row.state.capitalize()}: {note}" if note else "")
        if old is None or old.priority != row.priority:
            tip = PRIORITY_TIPS.get(row.priority, "") if row.priority is not None else ""
            items[PRIORITY_COLUMN].setToolTip(tip)

    def settle(self, end: int) -> None:
        """Rows read again are all placed (:meth:`place_rows`, in :func:`in_order`)
        up to ``end``: those past it are no longer listed."""
        self.remove_rows_from(end)
        self.states_changed.emit()

    def upsert(self, row: JobRow) -> None:
        """Show ``row``: replace the job's row, or add it; in its place either way."""
        old = self.get(row.job_id)
        row = _ended(row)
        if old is None:
            self.insert_rows(self._place(order(row)), [row])
            self._trim()
        elif order(row) == order(old):  # most changes (tokens, names, notes)
            self.update_row(row)
        else:
            position = self.position(row.job_id)
            target = self._place(order(row), skip=position)
            if target == position:
                self.update_row(row)
            else:
                self.move_row(row, target)
        if old is None or old.state != row.state:
            self.states_changed.emit()

    def _place(self, key: tuple[float, ...], skip: int | None = None) -> int:
        """The position of a row whose :func:`order` is ``key`` among the rows shown
        (but the one at ``skip``): a binary search, the rows being in that order."""
        low, high = 0, self.rowCount() - (skip is not None)
        while low < high:
            middle = (low + high) // 2
            at = middle + 1 if skip is not None and middle >= skip else middle
            row = self.row_at(at)
            assert row is not None  # a position among the rows shown
            if order(row) < key:
                low = middle + 1
            else:
                high = middle
        return low

    def update(self, job_id: int, **changes: Any) -> JobRow | None:
        """Change some of a job's values; None if the job is not listed."""
        old = self.get(job_id)
        if old is None:
            return None
        row = replace(old, **changes)
        self.upsert(row)
        return row

    def raise_priority(self, job_id: int, priority: int) -> bool:
        """Show the job's ``priority`` unless it already shows a higher one (a priority
        only rises: a late event's lower one is older news); False if not listed."""
        row = self.get(job_id)
        if row is None:
            return False
        if row.priority is None or row.priority < priority:
            self.update(job_id, priority=priority)
        return True

    def add_tokens(self, job_id: int, count: int) -> None:
        row = self.get(job_id)
        if row is not None:
            self.update(job_id, tokens=row.tokens + count, state="running")

    def name_patient(self, patient_id: str, name: str) -> None:
        """Show ``name`` on the patient's rows (learnt, or changed)."""
        # The records, not the items in display order: asked for every new patient (a
        # watch-folder burst makes hundreds), most of whom have no row yet.
        named = [
            row.job_id
            for row in self._records.values()
            if row.patient_id == patient_id and row.patient_name != name
        ]
        for job_id in named:
            self.update(job_id, patient_name=name)

    def remove_patient(self, patient_id: str) -> None:
        """Drop the jobs of a deleted patient (their rows went with the patient)."""
        gone = [row.job_id for row in self._records.values() if row.patient_id == patient_id]
        for job_id in gone:
            self.remove_row(job_id)
        if gone:
            self.states_changed.emit()

    def has_queued(self) -> bool:
        """Whether a queued job is listed (asked on every change of a job's state: the
        records, not the items in display order, so it stays cheap with many rows)."""
        return any(row.state == "queued" for row in self._records.values())

    def has_running(self) -> bool:
        """Whether a running job is listed (the records, as :meth:`has_queued`)."""
        return any(row.state == "running" for row in self._records.values())

    def queued_count(self) -> int:
        """How many queued jobs are listed (the records, as :meth:`has_queued`)."""
        return sum(row.state == "queued" for row in self._records.values())

    def open_job_ids(self) -> list[int]:
        return [row.job_id for row in self._records.values() if row.state in OPEN_STATES]

    def last_queued(self, but: int | None = None) -> JobRow | None:
        """The listed queued job that runs last (but job ``but``); None if none is."""
        position = self._place(FINISHED_FIRST) - 1  # the rows are in order()
        row = self.row_at(position)
        if row is not None and row.job_id == but:
            row = self.row_at(position - 1)
        return row if row is not None and row.state == "queued" else None

    def remove_job(self, job_id: int) -> None:
        """No longer list the job (it is still open, past those listed)."""
        if self.remove_row(job_id):
            self.states_changed.emit()

    def _trim(self) -> None:
        """Past :data:`MAX_SHOWN` rows, drop the finished jobs that ended first (at the
        bottom)."""
        excess = self.rowCount() - MAX_SHOWN
        position = self.rowCount() - 1
        while excess > 0 and position >= 0:
            row = self.row_at(position)
            if row is not None and row.state not in OPEN_STATES:
                self.remove_row(row.job_id)
                excess -= 1
            position -= 1


def _ended(row: JobRow) -> JobRow:
    """``row``, saying when it ended if it has and does not say (it ended now)."""
    if row.state in OPEN_STATES or row.finished_time is not None:
        return row
    return replace(row, finished_time=time.time())


def _tokens(count: int) -> str:
    return f"{count} token" if count == 1 else f"{count} tokens"
