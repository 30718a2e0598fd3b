"""Notifications: the panel and its unread badge, and alerts for critical ones (in the
system tray where there is one, as an in-window toast where there is not)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from PySide6.QtCore import QObject, QTimer, Slot

from ophthai_desktop.core.errors import NotFound
from ophthai_desktop.core.paging import After
from ophthai_desktop.core.records import NotificationRecord, Page, PatientRecord, UnreadTally
from ophthai_desktop.core.services.jobs import says_answer_not_read
from ophthai_desktop.ui.context import GuiContext
from ophthai_desktop.ui.controllers.patients import PatientsController
from ophthai_desktop.ui.messages import (
    describe,
    once_database_answers,
)
from ophthai_desktop.ui.models.notification_list import NotificationRow, notification_row
from ophthai_desktop.ui.tray import TrayIcon
from ophthai_desktop.ui.views.banner import ReadFailureNotice
from ophthai_desktop.ui.views.main_window import MainWindow
from ophthai_desktop.ui.views.notifications import NotificationsPanel
from ophthai_desktop.ui.views.rows_in_use import RowsInUse
from ophthai_desktop.ui.views.toast import AlertKind

log = logging.getLogger(__name__)

#: Notifications fetched at a time (the newest at start, older ones as the list scrolls).
PAGE_SIZE = 200
#: The most notifications the panel holds as new ones arrive (the newest; older ones are
#: read again from the database as the list scrolls to them). A window left open for
#: weeks beside a watch folder held every one that arrived: 500 a day, without end.
MAX_LOADED = 500
#: The least time between two counts of the unread ones while notifications keep
#: changing (a burst is counted as it goes, not once per notification).
COUNT_DELAY_MS = 150
#: How long after a read that failed (the first page, an older one, the unread count) it
#: is read again, or sooner, once the database answers again: a window opened while the
#: database did not answer listed nothing for the whole session.
RELOAD_AFTER_MS = 5000
#: How long after a critical finding's alert the next ones are gathered into one (the
#: burst goes on while they keep coming within this time of each other's alert).
CRITICAL_GATHER_MS = 1000


@dataclass
class _Heard:
    """What events told of notifications since an older page was asked for: newer than
    the page, it wins over it."""

    rows: dict[int, NotificationRow | None] = field(default_factory=dict)  # None: deleted
    all_read: bool = False

    def all_marked_read(self) -> None:
        self.all_read = True
        self.rows = {key: row and replace(row, read=True) for key, row in self.rows.items()}

    def told(self, rows: Iterable[NotificationRow]) -> list[NotificationRow]:
        """``rows`` as told since: those deleted left out, those changed as they are now."""
        told = []
        for row in rows:
            now = self.rows.get(row.notification_id, row)
            if now is row and self.all_read:
                now = replace(row, read=True)
            if now is not None:
                told.append(now)
        return told


class _CriticalBurst:
    """Critical findings told as they come, a burst of them as one message: the first
    at once (a finding does not wait), those within a moment of it gathered and told
    together, with it, a moment later, and so on while they keep coming. One message
    each, a watch folder's scans finishing together made a toast (or tray message) that
    changed several times a second and a screen reader interrupted as often. A finding
    validated meanwhile is no longer spoken of: counted in, the gathered toast spoke of
    it, and stayed after the others were validated."""

    def __init__(self, parent: QObject, alert: Callable[..., None]) -> None:
        self._alert = alert
        #: The burst's findings still to validate: (message, analysis).
        self._burst: list[tuple[str, int | None]] = []
        self._unsaid = 0  # how many came since the last message
        self._timer = QTimer(parent)
        self._timer.setSingleShot(True)
        self._timer.setInterval(CRITICAL_GATHER_MS)
        self._timer.timeout.connect(self._on_timer_timeout)

    def add(self, message: str, analysis_id: int | None) -> None:
        if self._timer.isActive():
            self._burst.append((message, analysis_id))
            self._unsaid += 1
            return
        self._burst, self._unsaid = [(message, analysis_id)], 0
        self._alert("Critical finding", message, kind="critical", about=analysis_id)
        self._timer.start()

    def validated(self, analysis_id: int) -> None:
        """The analysis ``analysis_id`` has a verdict: the burst no longer tells of it."""
        self._burst = [finding for finding in self._burst if finding[1] != analysis_id]

    def _on_timer_timeout(self) -> None:
        if not self._unsaid:
            return  # none came meanwhile: the burst is over
        self._unsaid = 0
        if len(self._burst) == 1:  # the others validated meanwhile
            message, analysis_id = self._burst[0]
            self._alert("Critical finding", message, kind="critical", about=analysis_id)
        elif self._burst:
            self._alert(
                f"{len(self._burst)} critical findings",
                "Possible abnormal findings that need validation: see Notifications, where "
                "each opens its patient.",
                kind="critical",
                about=[a for _message, a in self._burst if a is not None],
            )
        self._timer.start()


class NotificationsController(QObject):
    """Keeps the notification list and the unread count current."""

    def __init__(
        self,
        ctx: GuiContext,
        window: MainWindow,
        panel: NotificationsPanel,
        patients: PatientsController,
        tray: TrayIcon | None,
    ) -> None:
        super().__init__(panel)
        self._ctx = ctx
        self._service = ctx.application.notifications
        self._window = window
        self._panel = panel
        self._model = panel.model
        self._patients = patients
        self._tray = tray
        self._rows_in_use = RowsInUse(panel.list, window.about_to_hide, window.notifications_dock)
        self.unread = 0
        # The badge shows what the database counted, moved at once by the changes
        # heard since; a new notification only if that count did not see it: one read
        # as it was stored and its event handed over after (the bridge delivers in
        # batches) was counted twice (the badge read 40 of 31 at start). One count is
        # asked at a time; a change heard meanwhile asks another once it arrives.
        self._count_timer = QTimer(self)
        self._count_timer.setSingleShot(True)
        self._count_timer.setInterval(COUNT_DELAY_MS)
        self._count_timer.timeout.connect(self._refresh_count)
        self._counting = False  # a count is on its way
        self._count_again = False  # something changed since it was asked
        # Bumped by a change that can lower the count (read, deleted): a count asked
        # before it may say more than there are, and is not shown.
        self._lowered = 0
        # A new unread notification past the newest the count shown saw moves the
        # badge; one heard while a count is on its way is added to it unless it saw it.
        self._counted_to = 0  # the newest id the count shown saw
        self._heard_while_counting: list[int] = []
        # Patients deleted while the window runs. Their notifications are deleted with
        # them (and leave the list as that is told); a page of the list read before the
        # deletion and arriving after it would list them again, leading nowhere. A
        # patient created again under the same id (the clinic's record number) leaves it.
        self._deleted_patients: set[str] = set()
        # What events did to the list while its first page is read (None: not being
        # read), done again on top of the page: read before them, it is older news.
        self._heard: list[Callable[[], object]] | None = None
        # What events told of notifications while an older page is read (None: none
        # is): one deleted meanwhile came back with the page, one read showed unread.
        self._page_heard: _Heard | None = None
        # What could not be read, read again on a timer and once the database answers.
        self._reload_timer = QTimer(self)
        self._reload_timer.setSingleShot(True)
        self._reload_timer.setInterval(RELOAD_AFTER_MS)
        self._reload_timer.timeout.connect(self._on_reload_timer_timeout)
        self._first_read_failed = False
        self._page_failed = False
        self._count_failed = False
        self._read_failure = ReadFailureNotice(window.banner, "The notifications")
        self._critical = _CriticalBurst(self, self.alert)
        # The clinician's changes on their way (a database locked by another program
        # takes up to 30 s to answer): pressed again meanwhile, one is not sent again.
        self._marking: set[int] = set()
        self._marking_all = False
        self._deleting: set[int] = set()

        bridge = ctx.bridge
        bridge.patient_created.connect(self._on_bridge_patient_created)
        bridge.patient_updated.connect(self._on_bridge_patient_updated)
        bridge.patient_deleted.connect(self._on_bridge_patient_deleted)
        bridge.notification_created.connect(self._on_bridge_notification_created)
        bridge.notification_updated.connect(self._on_bridge_notification_updated)
        bridge.notification_deleted.connect(self._on_bridge_notification_deleted)
        bridge.notifications_all_read.connect(self._on_bridge_notifications_all_read)
        bridge.database_availability_changed.connect(self._on_bridge_database_availability_changed)
        panel.notification_opened.connect(self._on_panel_notification_opened)
        panel.mark_read_requested.connect(self.mark_read)
        panel.mark_all_read_requested.connect(self.mark_all_read)
        panel.delete_requested.connect(self.delete)
        self._model.more_requested.connect(self._on_model_more_requested)

    def start(self) -> None:
        """List the newest notifications. One created, changed or deleted while they are
        read is listed as its event told: the page replaced the rows, and one that
        arrived meanwhile was missing until the window was opened again."""
        self._read_first_page()
        self._refresh_count()

    def _read_first_page(self) -> None:
        """Read the newest notifications (one read at a time); one that fails is read
        again (:meth:`_read_again`)."""
        if self._heard is not None:
            return  # on its way
        self._heard = []

        def done(read: tuple[Page[NotificationRecord], list[NotificationRow]]) -> None:
            page, rows = read
            heard, self._heard = self._heard or [], None
            self._first_read_failed = False
            self._model.reset(self._kept(rows), page.total)
            for change in heard:
                change()
            self._panel.body.rows_read()
            self._read_failure.read()

        def failed(exc: BaseException) -> None:
            self._heard = None
            self._read_failure.failed(exc)
            self._panel.body.read_failed()
            self._first_read_failed = True
            self._read_again_soon()

        self._ctx.tasks.submit(lambda: self._read_rows(None), done, failed)

    def _read_again_soon(self) -> None:
        if not self._reload_timer.isActive():
            self._reload_timer.start()

    @Slot()
    def _on_reload_timer_timeout(self) -> None:
        self._read_again()

    def _read_again(self, *, count: bool = False) -> None:
        """Read again what could not be read: the first page; an older page, while the
        list still shows its end (Qt asks for it again only as the list scrolls, and a
        list at its end scrolls no further); the unread count (with ``count``, even if
        it did not fail)."""
        self._reload_timer.stop()
        if self._first_read_failed:
            self._read_first_page()
        if self._page_failed:
            self._page_failed = False
            if self._panel.end_in_view():
                self._model.fetchMore()
        if self._count_failed or count:
            self._count_soon()

    def _change(self, change: Callable[[], object]) -> None:
        """Change the rows listed now and, while the first page is read, again on top
        of it."""
        change()
        if self._heard is not None:
            self._heard.append(change)

    @Slot(int)
    def _on_model_more_requested(self, _skip: int) -> None:
        """The list scrolled to its end: the next older page, as events told since it
        was asked for (they are newer than the page).

        The page is the notifications older than the last one listed, not those past
        as many as are listed: one deleted by another window (which tells this one
        nothing) or before its event came made the page start one further, and a
        notification was never listed until the window was opened again."""
        if not self._panel.list.isVisible():  # trimmed while hidden, not read back
            self._model.fetch_failed()
            return
        last = self._model.row_at(self._model.rowCount() - 1)
        after = None if last is None else last.after
        heard = self._page_heard = _Heard()

        def done(read: tuple[Page[NotificationRecord], list[NotificationRow]]) -> None:
            page, read_rows = read
            self._page_heard = None
            rows = heard.told(self._kept(read_rows))
            # Those left out were counted in the page's total: deleted since.
            self._model.append(rows, page.total - (len(page.items) - len(rows)))

        def failed(_exc: BaseException) -> None:
            self._page_heard = None
            self._model.fetch_failed()
            self._page_failed = True
            self._read_again_soon()

        self._ctx.tasks.submit(lambda: self._read_rows(after), done, failed)

    def _read_rows(
        self, after: After | None
    ) -> tuple[Page[NotificationRecord], list[NotificationRow]]:
        """A page of notifications and their rows (on a pool thread: made on the GUI
        thread, a page's rows held it for about 5 ms of the page's stall)."""
        page = self._service.list_notifications(after=after, limit=PAGE_SIZE)
        return page, [notification_row(n) for n in page.items]

    def _kept(self, rows: Iterable[NotificationRow]) -> list[NotificationRow]:
        """``rows`` less those of a patient deleted since they were read."""
        return [r for r in rows if r.patient_id not in self._deleted_patients]

    # Events ---------------------------------------------------------------------------

    @Slot(object)
    def _on_bridge_notification_created(self, note: NotificationRecord) -> None:
        row = notification_row(note)
        self._change(lambda: self._model.insert_first([row]))
        # The rows the clinician looks at or has chosen stay, however far down.
        self._model.trim(max(MAX_LOADED, self._rows_in_use.count()))
        if not note.read and note.id > self._counted_to:
            self._move_badge(1)
            if self._counting:
                self._heard_while_counting.append(note.id)
        self._count_soon()
        if note.type == "critical":
            self._critical.add(note.message, note.analysis_id)
        elif says_answer_not_read(note):
            # As an analysis that failed is: not left among the infos.
            self.alert(
                "An answer could not be read", note.message, kind="warning", about=note.analysis_id
            )

    @Slot(object)
    def _on_bridge_patient_updated(self, patient: PatientRecord) -> None:
        """A verdict on the analysis a toast speaks of takes the toast away: it said the
        finding was preliminary and needed validation. (Qt has no way to take back a
        tray message: it shows its few seconds.)"""
        latest = patient.latest_analysis
        if latest is not None and latest.status != "preliminary":
            self._critical.validated(latest.id)
            self._window.toast.withdraw(latest.id)

    @Slot(object)
    def _on_bridge_patient_created(self, patient: PatientRecord) -> None:
        """A patient deleted, then created again with the same id: their notifications
        from now on are listed and open the patient."""
        self._deleted_patients.discard(patient.id)

    @Slot(str)
    def _on_bridge_patient_deleted(self, patient_id: str) -> None:
        self._deleted_patients.add(patient_id)
        self._change(lambda: self._drop_patient(patient_id))

    def _drop_patient(self, patient_id: str) -> None:
        """Take the notifications of a deleted patient out of the list: the core
        deleted them with the patient."""
        rows = self._model.records()
        for notification_id in [r.notification_id for r in rows if r.patient_id == patient_id]:
            self._model.remove(notification_id)

    @Slot(object)
    def _on_bridge_notification_updated(self, note: NotificationRecord) -> None:
        row = notification_row(note)
        listed = self._model.get(note.id)
        self._change(lambda: self._model.replace(row))
        if listed is not None and listed.read != row.read:
            self._move_badge(1 if listed.read else -1)
        if self._page_heard is not None:
            self._page_heard.rows[note.id] = row
        self._lowered += 1
        self._count_soon()

    @Slot(int)
    def _on_bridge_notification_deleted(self, notification_id: int) -> None:
        listed = self._model.get(notification_id)
        self._change(lambda: self._model.remove(notification_id))
        if listed is not None and not listed.read:
            self._move_badge(-1)
        if self._page_heard is not None:
            self._page_heard.rows[notification_id] = None
        self._lowered += 1
        self._count_soon()

    @Slot(int)
    def _on_bridge_notifications_all_read(self, _count: int) -> None:
        self._change(self._model.mark_all_read)
        if self._page_heard is not None:
            self._page_heard.all_marked_read()
        self._lowered += 1
        self._set_unread(0)
        self._count_soon()

    @Slot(bool)
    def _on_bridge_database_availability_changed(self, available: bool) -> None:
        """What was refused during the outage is read again now (a count refused then
        would otherwise wait for the next change)."""
        if available:
            self._read_again(count=True)

    def alert(
        self,
        title: str,
        text: str,
        *,
        kind: AlertKind = "info",
        about: int | Iterable[int] | None = None,
    ) -> None:
        """Tell the clinician even when the window is not in front (``about``: the
        analysis, or analyses, the message speaks of, withdrawn from the toast once
        validated)."""
        if self._tray is not None:
            self._tray.notify(title, text, kind=kind)
        else:
            self._window.toast.show_message(title, text, kind, about=about)

    # Clinician's actions ----------------------------------------------------------------

    @Slot(int, object)
    def _on_panel_notification_opened(self, notification_id: int, patient_id: str | None) -> None:
        if patient_id in self._deleted_patients:
            self._patient_was_deleted(patient_id)
            return
        if patient_id:
            self._patients.open_patient(
                patient_id, if_missing=lambda: self._patient_was_deleted(patient_id)
            )
        row = self._model.position(notification_id)
        note = self._model.row_at(row) if row is not None else None
        if note is not None and not note.read:
            self.mark_read(notification_id)

    def _patient_was_deleted(self, patient_id: str) -> None:
        """A notification was opened whose patient is deleted (here, before the list
        was read; or by another window on the same database, which tells this one
        nothing): say so rather than "not found", and take the patient's notifications,
        deleted with them, out of the list."""
        self._deleted_patients.add(patient_id)
        self._drop_patient(patient_id)
        self._window.banner.show_message(
            f"Patient {patient_id} was deleted, with their notifications: "
            "there is nothing to open.",
            "info",
        )

    def _refused(
        self, what: str, again: str, exc: BaseException, notification_id: int | None = None
    ) -> None:
        """A change of the clinician's was refused: the banner says which (it said only
        what the database said, "does not answer", not what was left undone), and once
        the database answers again, ``again``. A notification not found is gone
        (deleted with its patient, or by another window): it leaves the list."""
        if isinstance(exc, NotFound) and notification_id is not None:
            self._on_bridge_notification_deleted(notification_id)
            return
        self._window.banner.show_message(
            f"{what}: {describe(exc)}",
            "error",
            resolved=once_database_answers(exc, f"{what}: {again}"),
        )

    @Slot(int)
    def mark_read(self, notification_id: int) -> None:
        self._change_once(
            self._marking,
            notification_id,
            lambda: self._service.mark_read(notification_id, actor=self._ctx.actor),
            "The notification was not marked read",
            "mark it read again.",
        )

    def _change_once(
        self,
        pending: set[int],
        notification_id: int,
        change: Callable[[], object],
        what: str,
        again: str,
    ) -> None:
        """Send ``change`` of a notification unless one (of ``pending``'s kind) is on its
        way for it; a refusal says ``what`` was not done and, once the database
        answers, ``again``."""
        if notification_id in pending:
            return

        def failed(exc: BaseException) -> None:
            pending.discard(notification_id)
            self._refused(what, again, exc, notification_id)

        pending.add(notification_id)
        self._ctx.tasks.submit(
            change, lambda _result: pending.discard(notification_id), failed, change=True
        )

    @Slot()
    def mark_all_read(self) -> None:
        if self._marking_all:
            return

        def sent() -> None:
            self._marking_all = False

        def failed(exc: BaseException) -> None:
            sent()
            self._refused("The notifications were not marked read", "press All read again.", exc)

        self._marking_all = True
        self._ctx.tasks.submit(
            lambda: self._service.mark_all_read(actor=self._ctx.actor),
            lambda _count: sent(),
            failed,
            change=True,
        )

    @Slot(int)
    def delete(self, notification_id: int) -> None:
        self._change_once(
            self._deleting,
            notification_id,
            lambda: self._service.delete_notification(notification_id, actor=self._ctx.actor),
            "The notification was not deleted",
            "delete it again.",
        )

    # The badge --------------------------------------------------------------------------

    def _count_soon(self) -> None:
        """Count the unread ones now, or once the count on its way has arrived and
        :data:`COUNT_DELAY_MS` passed (not after the last change of a burst: a steady
        stream would never be counted)."""
        if self._counting:
            self._count_again = True
        elif not self._count_timer.isActive():
            self._refresh_count()

    @Slot()
    def _refresh_count(self) -> None:
        """Ask the database how many are unread (one question at a time)."""
        if self._counting:
            self._count_again = True
            return
        self._counting = True
        self._count_again = False
        self._heard_while_counting = []
        lowered = self._lowered

        def done(tally: UnreadTally) -> None:
            # Placed after the events published before it was read: one read after a
            # verdict committed, placed before the verdict's event, was lowered again.
            self._ctx.bridge.call_after_delivered(lambda: counted(tally))

        def counted(tally: UnreadTally) -> None:
            self._counting = False
            self._count_failed = False
            if lowered == self._lowered:  # else read or deleted since: maybe too many
                # Those heard meanwhile and stored after it was read, it left out.
                later = [n for n in self._heard_while_counting if n > tally.newest_id]
                self._counted_to = tally.newest_id
                self._set_unread(tally.count + len(later))
            if self._count_again:
                self._count_timer.start()

        def failed(_exc: BaseException) -> None:
            self._counting = False
            if self._count_again:  # changed since: counted again at once
                self._count_timer.start()
            else:
                self._count_failed = True
                self._read_again_soon()

        self._ctx.tasks.submit(self._service.unread_tally, done, failed)

    def _move_badge(self, change: int) -> None:
        """A listed notification read (or unread again, or deleted unread), or a new
        unread one, moves the badge with the row at once; the count asked for it
        follows. Before, the row showed read while the badge still counted it until that
        count arrived (a verdict's alarm: "1 unread" beside a list with none), and a new
        one waited for it."""
        self._set_unread(max(0, self.unread + change))

    def _set_unread(self, count: int) -> None:
        self.unread = count
        self._panel.set_unread(count)
        self._window.set_unread(count)
