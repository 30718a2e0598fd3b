"""The patient list and the patient page: queries, paging, live updates, dialogs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from PySide6.QtCore import QDate, QObject, QTimer, Signal, Slot
from PySide6.QtWidgets import QMessageBox

from ophthai_desktop.core.domain import matches_search
from ophthai_desktop.core.errors import DatabaseUnavailable, NotFound
from ophthai_desktop.core.paging import MAX_LIMIT, After
from ophthai_desktop.core.records import Page, PatientRecord
from ophthai_desktop.core.services.patients import patient_after
from ophthai_desktop.ui.context import GuiContext
from ophthai_desktop.ui.day import DayWatch
from ophthai_desktop.ui.messages import (
    describe,
    once_database_answers,
)
from ophthai_desktop.ui.models.patient_table import (
    COLUMN_OF,
    DEFAULT_ORDER,
    PatientRow,
    patient_row,
)
from ophthai_desktop.ui.views.banner import ReadFailureNotice
from ophthai_desktop.ui.views.confirm import ask
from ophthai_desktop.ui.views.focus import step_focus_to
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.patient_dialog import PatientDialog
from ophthai_desktop.ui.views.patient_list import PatientListView
from ophthai_desktop.ui.views.patient_page import PatientPage
from ophthai_desktop.ui.views.rows_in_use import RowsInUse
from ophthai_desktop.ui.window_state import ListPlace

log = logging.getLogger(__name__)

PAGE_SIZE = 200
SEARCH_DEBOUNCE_MS = 250
REFRESH_DEBOUNCE_MS = 400
#: A read of the list that failed is tried again this long after, or at once when the
#: database answers again (as the job queue's and the notifications' are).
RELOAD_AFTER_MS = 5000
#: New patients are added to the list together at most this often: a watch-folder
#: burst then costs the GUI one repaint of the list instead of one per patient.
ARRIVALS_MS = 100
#: The most patients the list holds as new ones arrive (the newest; the rest are read
#: again as the list scrolls to them). A window left open for weeks beside a watch
#: folder held a row for every patient that arrived: 500 a day, without end.
MAX_LOADED = 1000

CreateFn = Callable[[dict[str, Any]], PatientRecord]


def core_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """The form's values without the dialog's extras (``_modality`` ...)."""
    return {key: value for key, value in fields.items() if not key.startswith("_")}


@dataclass
class _Placing:
    """A list read again being placed over the rows shown (a page a turn)."""

    #: The patients of the rows read (and those listed meanwhile above them): a row
    #: shown that is not among them is no longer in the list.
    keys: set[str]
    #: How many patients the list has, as read (and those listed meanwhile above).
    total: int
    #: The patient of the last row placed (None: none yet).
    last: str | None = None


@dataclass
class _Heard:
    """What events told of patients while the list was being read: the read may have
    been taken before them, and is put right with them when it arrives."""

    #: Patient id -> their record as last told (None: deleted).
    records: dict[str, PatientRecord | None] = field(default_factory=dict)
    #: The patients created meanwhile, oldest first (a dict for its order).
    created: dict[str, None] = field(default_factory=dict)


class PatientsController(QObject):
    """Keeps the list in step with the query and the database, and the page with the
    chosen patient.

    Signals:
        patient_opened(object): the page now shows this PatientRecord (None: nobody).
        patient_changed(object): the shown patient's record changed.
    """

    patient_opened = Signal(object)
    patient_changed = Signal(object)

    def __init__(
        self,
        ctx: GuiContext,
        window: MainWindow,
        list_view: PatientListView,
        page: PatientPage,
    ) -> None:
        super().__init__(window)
        self._ctx = ctx
        self._patients = ctx.application.patients
        self._window = window
        self._view = list_view
        self._model = list_view.model
        self._page = page
        self._rows_in_use = RowsInUse(list_view.table, window.about_to_hide)
        self._search = ""
        self._status: str | None = None
        self._order_by = DEFAULT_ORDER
        self._descending = True
        self._generation = 0
        self._current_id: str | None = None
        self._current: PatientRecord | None = None
        #: The patient being opened as a change heard while they were read left them
        #: (shown instead of the read where newer).
        self._heard_opening: PatientRecord | None = None
        self.dialog: PatientDialog | None = None
        self.confirm: QMessageBox | None = None
        #: The patients whose deletion is on its way (a database that waits for a lock
        #: held elsewhere takes up to 30 s to answer).
        self._deleting: set[str] = set()

        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(SEARCH_DEBOUNCE_MS)
        self._search_timer.timeout.connect(self._on_search_timer_timeout)
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_DEBOUNCE_MS)
        self._refresh_timer.timeout.connect(self._on_refresh_timer_timeout)
        # A read that failed: read again on a timer and once the database answers.
        self._reload_timer = QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(RELOAD_AFTER_MS)
        self._reload_timer.timeout.connect(self._on_reload_timer_timeout)
        self._failed_read: bool | None = None  # keep_place of the read that failed
        self._read_failure = ReadFailureNotice(window.banner, "The patient list")
        self._arrivals: dict[str, PatientRecord] = {}  # created, not listed yet; oldest first
        self._arrivals_timer = QTimer(self)
        self._arrivals_timer.setSingleShot(True)
        self._arrivals_timer.setInterval(ARRIVALS_MS)
        self._arrivals_timer.timeout.connect(self._on_arrivals_timer_timeout)
        # Rows of a new query loaded up to the open patient, or of the list read again
        # where it was scrolled to, listed a page an event-loop turn: listing 10,000 rows
        # at once held the GUI thread for half a second.
        self._pending: list[PatientRow] = []
        self._placing: _Placing | None = None  # the list read again: rows placed so far
        # Since the read on its way was asked for (None: none is).
        self._heard: _Heard | None = None
        self._feed_timer = QTimer(self)
        self._feed_timer.setSingleShot(True)
        self._feed_timer.setInterval(0)
        self._feed_timer.timeout.connect(self._on_feed_timer_timeout)
        #: Ages are counted to the day the rows and the page were read: read again on a
        #: new day (see _on_day_watch_day_changed). The patient form and the oculomics
        #: form follow it too (their latest dates, ages and default date).
        self.day_watch = DayWatch(self)
        self.day_watch.day_changed.connect(self._on_day_watch_day_changed)

        list_view.search_edited.connect(self._on_view_search_edited)
        list_view.status_chosen.connect(self._on_view_status_chosen)
        list_view.patient_selected.connect(self._on_view_patient_selected)
        list_view.delete_requested.connect(self._on_view_delete_requested)
        self._model.more_requested.connect(self._on_model_more_requested)
        self._model.sort_requested.connect(self._on_model_sort_requested)
        page.edit_requested.connect(self.edit_patient)
        page.delete_requested.connect(self.delete_patient)
        window.new_patient_action.triggered.connect(lambda: self.new_patient())
        window.edit_patient_action.triggered.connect(self.edit_patient)
        window.delete_patient_action.triggered.connect(self.delete_patient)
        ctx.bridge.patient_created.connect(self._on_bridge_patient_created)
        ctx.bridge.patient_updated.connect(self._on_bridge_patient_updated)
        ctx.bridge.patient_deleted.connect(self._on_bridge_patient_deleted)
        ctx.bridge.database_availability_changed.connect(
            self._on_bridge_database_availability_changed
        )

    # State ------------------------------------------------------------------------------

    @property
    def current_patient_id(self) -> str | None:
        return self._current_id

    @property
    def current_patient(self) -> PatientRecord | None:
        return self._current

    @property
    def place(self) -> ListPlace:
        """The list's order and the open patient, to be put back at the next start."""
        order_by = None if self._order_by == DEFAULT_ORDER else self._order_by
        return ListPlace(order_by, self._descending, self._current_id)

    def start(self, place: ListPlace | None = None) -> None:
        """List the first patients; with ``place``, in the order the clinician left the
        list in, with the patient they had open (one deleted since: none)."""
        if place is not None:
            if place.order_by in COLUMN_OF:
                self._order_by, self._descending = place.order_by, place.descending
                self._view.show_sort(COLUMN_OF[place.order_by], descending=place.descending)
            if place.patient_id:
                self.open_patient(place.patient_id, missing_ok=True)
        self.refresh()

    # Queries ----------------------------------------------------------------------------

    @Slot()
    def refresh(self, *, keep_place: bool = False) -> None:
        """Run the current query again from its first page; with ``keep_place``, as
        many rows as are loaded, and the list stays where it was scrolled to (a
        patient who arrived or changed in a sorted list, not a new query). A new query
        loads the pages up to the open patient where it lists them, so that they stay
        chosen and in view (a search cleared lists them again, maybe far down)."""
        self._refresh_timer.stop()
        self._reload_timer.stop()
        self._arrivals_timer.stop()
        self._arrivals.clear()  # the new query's first page has them
        self._feed_timer.stop()
        self._pending = []
        self._placing = None
        self._heard = _Heard()
        self._generation += 1
        generation = self._generation
        query = self._query()
        least = max(PAGE_SIZE, self._model.loaded) if keep_place else PAGE_SIZE
        chosen = None if keep_place else self._current_id

        def fetch() -> tuple[list[PatientRow], int]:
            """Runs on a pool thread."""
            wanted = least
            position = None if chosen is None else self._patients.position_of(chosen, **query)
            if position is not None:  # whole pages, up to and with the chosen patient
                wanted = max(wanted, (position // PAGE_SIZE + 1) * PAGE_SIZE)
            rows: list[PatientRow] = []
            total = 0
            while len(rows) < wanted:
                limit = min(MAX_LIMIT, wanted - len(rows))
                after = self._after(rows[-1], query) if rows else None
                page = self._patients.list_patients(after=after, limit=limit, **query)
                rows.extend(patient_row(p) for p in page.items)
                total = page.total
                if len(page.items) < limit:
                    break
            return rows, total

        def failed(exc: BaseException) -> None:
            if generation == self._generation:
                # No read on its way any more: the events that need one ask for it (one
                # come to match a filtered list was not listed; one deleted past the
                # loaded rows stayed counted, until the next query).
                self._heard = None
                # Read again (a window opened while the database did not answer listed
                # no patient until the clinician searched or the day changed).
                self._failed_read = keep_place
                self._reload_timer.start()
            if isinstance(exc, DatabaseUnavailable):
                # The window's words for an outage, which its tracker turns into "the
                # database answers again" once it does.
                self._window.banner.show_message(describe(exc), "error")
            else:
                self._read_failure.failed(exc)

        self._ctx.tasks.submit(
            fetch, lambda result: self._on_first_page(generation, result, keep_place), failed
        )

    @Slot()
    def _on_refresh_timer_timeout(self) -> None:
        self.refresh(keep_place=True)

    @Slot()
    def _on_reload_timer_timeout(self) -> None:
        if self._failed_read is not None:
            self.refresh(keep_place=self._failed_read)

    @Slot(bool)
    def _on_bridge_database_availability_changed(self, available: bool) -> None:
        if available and self._failed_read is not None:
            self.refresh(keep_place=self._failed_read)

    def _query(self) -> dict[str, Any]:
        return {
            "search": self._search or None,
            "status": self._status,
            "order_by": self._order_by,
            "descending": self._descending,
        }

    def _on_first_page(
        self, generation: int, result: tuple[list[PatientRow], int], keep_place: bool = False
    ) -> None:
        if generation != self._generation:
            return
        self._failed_read = None
        self._read_failure.read()
        rows, total = self._put_right(*result)
        if keep_place:
            # The rows shown are changed into those read, a page a turn, in place: the
            # list stays where it was scrolled to, the chosen row chosen (a reset put
            # every row in anew at once, 534 ms on the GUI thread at 10,000 rows).
            self._pending = rows
            self._placing = _Placing({row.patient_id for row in rows}, total)
            self._on_feed_timer_timeout()
            return
        rows, self._pending = rows[:PAGE_SIZE], rows[PAGE_SIZE:]  # the rest one a turn
        self._model.reset(rows, total)
        self._view.show_count(self._model.loaded, self._model.total)
        self._view.table.scrollToTop()  # a new search, filter or order starts at its top
        if self._pending:
            self._feed_timer.start()
        elif self._current_id:
            self._view.select_patient(self._current_id)

    def _put_right(self, rows: list[PatientRow], total: int) -> tuple[list[PatientRow], int]:
        """The rows read (``total`` in all), as the events heard since they were asked
        for tell: a patient deleted meanwhile is not listed again, one changed shows
        their new values, and one created meanwhile is listed, at the top of the newest
        first (a sorted list is read again for them). Placed as they were read, they
        took out the row of a patient who arrived meanwhile, until the next read."""
        heard, self._heard = self._heard, None
        if heard is None or not heard.records:
            return rows, total
        read = {row.patient_id for row in rows}
        if self._unsure(heard, read, partial=len(rows) < total):
            self._refresh_timer.start()
        told: list[PatientRow] = []
        for row in rows:
            if row.patient_id not in heard.records:
                told.append(row)
                continue
            record = heard.records[row.patient_id]
            if record is not None and self._matches(record):
                told.append(patient_row(record))
            else:  # deleted, or no longer matching
                total -= 1
        if self._order_by == DEFAULT_ORDER and self._descending:
            arrived = [
                record
                for patient_id in reversed(heard.created)
                if patient_id not in read
                and (record := heard.records[patient_id]) is not None
                and self._matches(record)
            ]
            for record in arrived:
                self._arrivals.pop(record.id, None)  # listed now
            told[:0] = [patient_row(record) for record in arrived]
            total += len(arrived)
        return told, max(total, len(told))

    def _unsure(self, heard: _Heard, read: set[str], *, partial: bool) -> bool:
        """Whether what was heard of patients not among the rows read leaves the list
        unsure, to be read again: one deleted or no longer matching was counted in a
        partial read's ``total`` if it was taken before the change, else not, and nothing
        tells which ("N patients" stayed one too high); one matching a filtered list may
        match only since (turned Critical), where the read did not find them. (Those
        created meanwhile are listed as they arrived, or the list is read again.)"""
        for patient_id, record in heard.records.items():
            if patient_id in read or patient_id in heard.created:
                continue
            if record is None or not self._matches(record):
                if partial:
                    return True
            elif self._filtered():
                return True
        return False

    def _hear(
        self, patient_id: str, record: PatientRecord | None, *, created: bool = False
    ) -> None:
        """Remember what an event told of the patient, for the read on its way."""
        heard = self._heard
        if heard is None:
            return
        if created:
            heard.created[patient_id] = None
        heard.records[patient_id] = record

    @Slot()
    def _on_feed_timer_timeout(self) -> None:
        page, self._pending = self._pending[:PAGE_SIZE], self._pending[PAGE_SIZE:]
        placing = self._placing
        if placing is None:
            self._model.append(page)  # the rest of the read: counted by it
        else:
            after = None if placing.last is None else self._model.position(placing.last)
            # The open patient's row may go (pushed past the rows read by one sorted
            # above them): their page stays, and they are chosen again where listed.
            with self._view.rows_changing():
                end = self._model.place_rows(0 if after is None else after + 1, page, placing.keys)
                if not self._pending:  # the rows past those read are no longer listed
                    self._model.remove_rows_from(end)
            if page:
                placing.last = page[-1].patient_id
            if not self._pending:
                self._model.settle(placing.total)
                self._placing = None
        if self._pending:
            self._feed_timer.start()
            return
        self._view.show_count(self._model.loaded, self._model.total)
        if self._current_id:  # the open patient's page is in: chosen (and in view)
            self._view.select_patient(self._current_id, scroll=placing is None)

    @staticmethod
    def _after(row: PatientRow, query: dict[str, Any]) -> After:
        """Where the page after ``row`` starts in the list of ``query``.

        Pages start after the last patient held, not past as many as are held: a
        patient deleted by another window (which tells this one nothing), or before its
        event came, made the next page start one further, and a patient was not listed
        until the list was read again from the top."""
        return patient_after(row.record, query["order_by"])

    @Slot(int)
    def _on_model_more_requested(self, _skip: int) -> None:
        if not self._view.table.isVisible():
            # A list trimmed while hidden (see RowsInUse) was read back at once: its
            # scroll bar, at its end, asked for the rows dropped. Asked again when shown.
            self._model.fetch_failed()
            return
        if self._pending:
            return  # the next page is already here; its listing answers the view
        if self._placing is not None:  # the last rows read are being placed
            return
        generation = self._generation
        query = self._query()
        last = self._model.row_at(self._model.loaded - 1)
        after = None if last is None else self._after(last, query)

        def fetch() -> Page[PatientRecord]:
            return self._patients.list_patients(after=after, limit=PAGE_SIZE, **query)

        def done(page: Page[PatientRecord]) -> None:
            if generation != self._generation:
                return
            self._model.append([patient_row(p) for p in page.items], page.total)
            self._view.show_count(self._model.loaded, self._model.total)
            if self._current_id:  # listed again further down (pushed past the rows read)
                self._view.select_patient(self._current_id, scroll=False)

        def failed(exc: BaseException) -> None:
            self._model.fetch_failed()
            self._window.banner.show_message(describe(exc), "error")

        self._ctx.tasks.submit(fetch, done, failed)

    @Slot(str)
    def _on_view_search_edited(self, _text: str) -> None:
        self._search_timer.start()

    @Slot()
    def _on_search_timer_timeout(self) -> None:
        text = self._view.search.text().strip()
        if text != self._search:
            self._search = text
            self.refresh()

    @Slot(object)
    def _on_view_status_chosen(self, status: str | None) -> None:
        self._status = status
        self.refresh()

    @Slot(str, bool)
    def _on_model_sort_requested(self, order_by: str, descending: bool) -> None:
        if (order_by, descending) != (self._order_by, self._descending):
            self._order_by, self._descending = order_by, descending
            self.refresh()

    # The page ---------------------------------------------------------------------------

    @Slot(object)
    def _on_view_patient_selected(self, patient_id: str | None) -> None:
        if patient_id != self._current_id:
            self.open_patient(patient_id)

    def open_patient(
        self,
        patient_id: str | None,
        *,
        missing_ok: bool = False,
        if_missing: Callable[[], None] | None = None,
        focus_page: bool = False,
    ) -> None:
        """Show ``patient_id`` on the page (None clears it) and select it in the list;
        with ``missing_ok``, a patient not found leaves the page empty without a word;
        with ``if_missing``, it is called to say so instead of "not found"; with
        ``focus_page``, the keyboard goes to the patient's details once shown."""
        self._current_id = patient_id
        self._view.select_patient(patient_id)
        if patient_id is None:
            self._show(None)
            return

        def done(record: PatientRecord) -> None:
            if record.id == self._current_id:
                # Changed while this was read (their first scan arrived): the page, and
                # Analyse, show what was heard, not what was read before it.
                for heard in (self._current, self._heard_opening):
                    if (
                        heard is not None
                        and heard.id == record.id
                        and heard.updated_at > record.updated_at
                    ):
                        record = heard
                self._show(record)
                if focus_page:
                    step_focus_to(self._page.info_scroll)

        def failed(exc: BaseException) -> None:
            if patient_id != self._current_id:
                return
            if isinstance(exc, NotFound):
                self._current_id = None
                self._show(None)
                if missing_ok:
                    return
                if if_missing is not None:
                    if_missing()
                    return
            self._window.banner.show_message(describe(exc), "error")

        self._ctx.tasks.submit(lambda: self._patients.get_patient(patient_id), done, failed)

    def _show(self, record: PatientRecord | None) -> None:
        focus = self._window.focusWidget()
        on_page = focus is not None and self._page.isAncestorOf(focus)
        self._current = record
        self._heard_opening = None
        self._page.show_patient(record)
        if record is None and on_page:
            # The page's buttons and fields went with the patient (deleted here or
            # elsewhere): the keyboard goes back to the list, not to the empty page's
            # hint, where Qt left it and a screen reader found nothing to say.
            step_focus_to(self._view.table)
        self._window.set_patient_actions_enabled(record is not None)
        self.patient_opened.emit(record)

    # Live updates -----------------------------------------------------------------------

    @Slot(QDate)
    def _on_day_watch_day_changed(self, _day: QDate) -> None:
        """A patient's age is derived from the birth date on the day the row or the page
        was read: a window left open over a birthday (all day, for days in the tray)
        showed last year's age, and the list sorted by age out of order. Both are read
        again, in place, as when a patient changed."""
        self.refresh(keep_place=True)
        patient_id = self._current_id
        if patient_id is None:
            return

        def done(record: PatientRecord) -> None:
            if (
                record.id == self._current_id
                and record != self._current
                and self._is_open(record.id)
            ):
                self._current = record
                self._page.show_patient(record)
                self.patient_changed.emit(record)

        def failed(_exc: BaseException) -> None:
            """Deleted meanwhile (its event clears the page), or the database is away
            (the page is read again when it changes): nothing to tell."""

        self._ctx.tasks.submit(lambda: self._patients.get_patient(patient_id), done, failed)

    def _filtered(self) -> bool:
        """Whether the list leaves patients out (a search or a status chosen)."""
        return bool(self._search or self._status)

    def _matches(self, patient: PatientRecord) -> bool:
        if self._status and patient.status != self._status:
            return False
        if self._search:
            return matches_search(self._search, patient.name, patient.id)
        return True

    @Slot(object)
    def _on_bridge_patient_created(self, patient: PatientRecord) -> None:
        self._hear(patient.id, patient, created=True)
        if not self._matches(patient):
            return
        if self._order_by == DEFAULT_ORDER and self._descending:
            self._arrivals[patient.id] = patient
            if not self._arrivals_timer.isActive():
                self._arrivals_timer.start()
        else:
            self._refresh_timer.start()

    @Slot()
    def _on_arrivals_timer_timeout(self) -> None:
        arrivals, self._arrivals = self._arrivals, {}
        if not arrivals:
            return
        table = self._view.table
        scrolled = table.verticalScrollBar().value()
        before = self._model.rowCount()
        placing = self._placing
        if placing is not None:  # listed above the rows being placed: kept there ...
            # ... and counted, those the read did not see: the list took the read's
            # count once they were placed, and stopped one row short of its end.
            placing.total += sum(
                1 for key in arrivals if key not in placing.keys and self._model.get(key) is None
            )
            placing.keys.update(arrivals)
        self._model.insert_first([patient_row(p) for p in reversed(arrivals.values())])
        added = self._model.rowCount() - before
        if scrolled > 0 and added > 0:
            # Scrolled down the list: the rows looked at (and about to be clicked) stay
            # where they are; only a list at its top shows the new patients coming in.
            table.doItemsLayout()  # the scroll range takes in the new rows now
            step = table.verticalHeader().defaultSectionSize()  # rows have fixed heights
            table.verticalScrollBar().setValue(scrolled + added * step)
        if self._placing is None and not self._pending:  # else rows are being listed
            # The rows in view and the open patient's stay, however far down.
            chosen = self._model.row_of(self._current_id) if self._current_id else None
            keep = max(MAX_LOADED, self._rows_in_use.count(), 0 if chosen is None else chosen + 1)
            self._view.trim(keep)
        self._view.show_count(self._model.loaded, self._model.total)
        if self._current_id:
            self._view.select_patient(self._current_id, scroll=False)

    @Slot(object)
    def _on_bridge_patient_updated(self, patient: PatientRecord) -> None:
        self._hear(patient.id, patient)
        if patient.id in self._arrivals:  # not listed yet: it will be as it is now
            if self._matches(patient):
                self._arrivals[patient.id] = patient
            else:
                del self._arrivals[patient.id]
        elif self._matches(patient):
            row = patient_row(patient)
            pending = self._patch_pending(patient.id, row)
            listed = self._model.get(patient.id)
            replaced = self._model.replace(row)
            # Read again in its place (a patient turned Critical in a list sorted by
            # status stayed among the pending ones, where nobody looked).
            if self._order_by != DEFAULT_ORDER and (
                not replaced or self._sorted_value_changed(listed, row)
            ):
                self._refresh_timer.start()
            elif not (replaced or pending) and self._filtered() and self._heard is None:
                # Maybe matching only now (turned Critical in a list filtered by it: they
                # were not listed until the next query). A read on its way is put right.
                self._refresh_timer.start()
        else:
            self._unlisted(patient.id)
        if patient.id == self._current_id:
            if self._is_open(patient.id):
                self._current = patient
                self._page.show_patient(patient)
                self.patient_changed.emit(patient)
            else:
                self._heard_opening = patient  # newer than the read on its way

    def _is_open(self, patient_id: str) -> bool:
        """Whether ``patient_id`` is opened on the page, not only being read for it: a
        change heard while they were read showed them on the page before the tabs heard
        they were opened, and the analysis tab offered the booking's Cancel appointment
        for the patient shown before (whose appointment it would have cancelled)."""
        shown = self._page.patient
        return shown is not None and shown.id == patient_id

    @Slot(str)
    def _on_bridge_patient_deleted(self, patient_id: str) -> None:
        self._hear(patient_id, None)
        self._arrivals.pop(patient_id, None)
        if patient_id == self._current_id:
            self._current_id = None
            self._show(None)
        self._unlisted(patient_id)

    def _unlisted(self, patient_id: str) -> None:
        """The patient is not in the list any more (deleted, or no longer matching)."""
        if self._placing is not None:
            self._placing.keys.discard(patient_id)
        self._patch_pending(patient_id, None)  # read before the change: not to be listed
        if self._remove_row(patient_id):
            self._view.show_count(self._model.loaded, self._model.total)
            self._view.select_patient(self._current_id, scroll=False)
        elif self._heard is None and self._model.loaded < self._model.total:
            # Maybe among those not loaded, and counted: read again for the count ("N
            # patients" stayed one too high). A read on its way is put right instead.
            self._refresh_timer.start()

    def _sorted_value_changed(self, listed: PatientRow | None, row: PatientRow) -> bool:
        """Whether the value the list is sorted by differs between the row listed and
        its new values (the patient's place in the list may have changed)."""
        if listed is None:
            return True
        column = COLUMN_OF.get(self._order_by)
        if column is None:
            return listed.cells != row.cells
        return listed.cells[column] != row.cells[column]

    def _patch_pending(self, patient_id: str, row: PatientRow | None) -> bool:
        """The rows read but not listed yet show the patient as ``row`` now (None: not
        at all); they were read before the event that told of it. Returns whether the
        patient is among them."""
        if not any(pending.patient_id == patient_id for pending in self._pending):
            return False
        if row is None:
            self._pending = [
                pending for pending in self._pending if pending.patient_id != patient_id
            ]
        else:
            self._pending = [row if p.patient_id == patient_id else p for p in self._pending]
        return True

    def _remove_row(self, patient_id: str) -> bool:
        """Take the patient's row out of the list; rows being placed go on after the
        row above it if it was the last placed."""
        placing = self._placing
        if placing is not None and placing.last == patient_id:
            above = self._model.position(patient_id)
            placing.last = None if not above else self._model.patient_id_at(above - 1)
        return self._view.remove_patient(patient_id)

    # Dialogs ----------------------------------------------------------------------------

    def new_patient(
        self,
        *,
        files: Sequence[str] = (),
        create: CreateFn | None = None,
        guess: tuple[str, str] | None = None,
    ) -> PatientDialog:
        """Open the new-patient form. ``create(fields)`` runs on a pool thread (default:
        :meth:`PatientService.create_patient`); the new patient is then opened."""
        dialog = PatientDialog(self._window, files=files)
        self.day_watch.day_changed.connect(dialog.follow_today)
        if guess is not None:
            dialog.set_guess(*guess)

        def default_create(fields: dict[str, Any]) -> PatientRecord:
            return self._patients.create_patient(core_fields(fields), actor=self._ctx.actor)

        make = create or default_create

        def submitted(fields: dict[str, Any]) -> None:
            self._ctx.tasks.submit(
                lambda: make(fields),
                lambda record: self._on_dialog_saved(dialog, record),
                lambda exc: dialog.show_error(getattr(exc, "field", None), describe(exc)),
                change=True,
            )

        dialog.submitted.connect(submitted)
        dialog.rejected.connect(lambda: self._on_dialog_rejected(dialog))
        self._ctx.bridge.database_availability_changed.connect(dialog.database_answered)
        self.dialog = dialog
        dialog.open()
        return dialog

    @Slot()
    def edit_patient(self) -> PatientDialog | None:
        patient = self._current
        if patient is None:
            return None
        dialog = PatientDialog(self._window, patient=patient)
        self.day_watch.day_changed.connect(dialog.follow_today)

        def submitted(fields: dict[str, Any]) -> None:
            if not fields:  # nothing changed: nothing to write
                self._on_dialog_saved(dialog, patient)
                return
            self._ctx.tasks.submit(
                lambda: self._patients.update_patient(
                    patient.id, core_fields(fields), actor=self._ctx.actor
                ),
                lambda record: self._on_dialog_saved(dialog, record),
                lambda exc: dialog.show_error(getattr(exc, "field", None), describe(exc)),
                change=True,
            )

        dialog.submitted.connect(submitted)
        dialog.rejected.connect(lambda: self._on_dialog_rejected(dialog))
        self._ctx.bridge.database_availability_changed.connect(dialog.database_answered)
        self.dialog = dialog
        dialog.open()
        return dialog

    def _on_dialog_rejected(self, dialog: PatientDialog) -> None:
        """A form cancelled goes as a saved one does: each stayed a hidden child of the
        window, still following the day, for as long as the window was open."""
        dialog.deleteLater()
        if self.dialog is dialog:
            self.dialog = None

    def _on_dialog_saved(self, dialog: PatientDialog, record: PatientRecord) -> None:
        dialog.accept()
        dialog.deleteLater()
        if self.dialog is dialog:
            self.dialog = None
        # A new patient's next steps (Import image, Analyse) are on their page: the
        # keyboard goes there, not back to the search field Ctrl+N was pressed in.
        self.open_patient(record.id, focus_page=dialog.patient is None)

    @Slot()
    def _on_view_delete_requested(self) -> None:
        """Delete in the list: the patient chosen there, who must be the one on the page
        (a row chosen while the page still loads it, or no row chosen, asks nothing)."""
        chosen = self._view.selected_patient_id()
        if chosen is not None and chosen == self._current_id:
            self.delete_patient()

    @Slot()
    def delete_patient(self) -> None:
        """Ask to delete the patient on the page, then delete them (the one named in the
        question, whatever happens meanwhile)."""
        patient = self._current
        if patient is None or patient.id != self._current_id:
            return  # the page still shows the one before the patient being opened
        who = f"{patient.name} ({patient.id})"
        if patient.id in self._deleting:  # asked again while the database waits
            self._window.banner.show_message(f"{who} is being deleted…", "info")
            return

        def deleted(_none: None) -> None:
            self._deleting.discard(patient.id)
            self._window.banner.show_message(
                f"{who} was deleted with their scans, analyses, "
                "oculomics measurements and notifications.",
                "info",
            )

        def failed(exc: BaseException) -> None:
            # The window said only that the database does not answer, then that it
            # answers again: not that the patient was still there.
            self._deleting.discard(patient.id)
            self._window.banner.show_message(
                f"{who} was not deleted: {describe(exc)}",
                "error",
                resolved=once_database_answers(exc, f"{who} was not deleted: delete again."),
            )

        def confirmed() -> None:
            if patient.id in self._deleting:
                return
            self._deleting.add(patient.id)
            # Said at once: a locked database kept the window silent for up to 30 s, and
            # Delete could be asked and confirmed again meanwhile.
            self._window.banner.show_message(f"{who} is being deleted…", "info")
            self._ctx.tasks.submit(
                lambda: self._patients.delete_patient(patient.id, actor=self._ctx.actor),
                deleted,
                failed,
                change=True,
            )

        # Everything that goes with the patient, measurements included: the question
        # named scans, analyses and notifications only, and years of eye-pressure
        # readings went without a word.
        scans = f"{patient.scan_count} scan{'' if patient.scan_count == 1 else 's'}"
        self.confirm = ask(
            self._window,
            "Delete patient",
            f"Delete {patient.name} ({patient.id}) with their {scans}, analyses, "
            "oculomics measurements and notifications? This cannot be undone.",
            "Delete",
            confirmed,
        )
