"""The Qt side of the core event bus.

Bus subscribers run on the publisher's thread (the inference worker, the API server's
thread pool, the watcher) and must only hand events off. :class:`EventBridge` appends
each event to a locked list and wakes the GUI thread at most once per batch; on the GUI
thread a 50 ms single-shot timer collects what arrived meanwhile, merges consecutive
token deltas of the same analysis into one piece, and re-emits everything as Qt signals
in the order it was published. So a model writing hundreds of tokens a second costs the
GUI twenty small updates a second, and no widget is ever touched off the GUI thread.
A burst (a watch folder full of files) is delivered in slices of a few milliseconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

from ophthai_desktop.core import events as ev

log = logging.getLogger(__name__)

#: How long the bridge collects events before delivering them to the GUI.
BATCH_INTERVAL_MS = 50
#: The longest the GUI thread spends delivering events in one go. Each slice is
#: followed by the repaint of what it changed; with 4 ms slices a watch-folder burst
#: held the GUI for up to 37 ms at a time (bench/gui_stall.py), with 2 ms for 19 ms.
SLICE_S = 0.002


@dataclass
class _Progress:
    """Consecutive deltas of one analysis and phase, merged."""

    job_id: int
    phase: str
    parts: list[str] = field(default_factory=list)


@dataclass
class _AfterDelivered:
    """A call waiting, in the event stream, for the events published before it."""

    callback: Callable[[], None]


class EventBridge(QObject):
    """Re-emits core events as signals on the GUI thread, batched every 50 ms.

    Signals:
        patient_created(PatientRecord)
        patient_updated(PatientRecord)
        patient_deleted(str patient_id)
        scan_ingested(ScanRecord)
        analysis_queued(int job_id, object patient_id, bool requeued, int priority,
            object created_at): a job queued (or, ``requeued``, put back); ``priority`` a
            ``JobPriority``; ``created_at`` (datetime) when it was first queued.
        analysis_prioritised(int job_id, object patient_id, int priority): a queued job
            moved ahead (someone asked for the analysis of its scan).
        analysis_started(int job_id, object patient_id)
        analysis_progressed(int job_id, str phase, str text, int pieces): the deltas of
            one batch merged; ``pieces`` is how many deltas (about one per token).
        analysis_finished(int job_id, object patient_id, AnalysisRecord)
        analysis_failed(int job_id, object patient_id, str reason)
        analysis_cancelled(int job_id, object patient_id)
        queue_waiting_changed(object waiting): why the worker takes no queued analysis
            now (str), or None when it takes them again.
        notification_created(NotificationRecord)
        notification_updated(NotificationRecord)
        notification_deleted(int notification_id)
        notifications_all_read(int count)
        model_state_changed(str state, str message, object progress)
        oculomics_measured(OculomicsRecord)
        database_availability_changed(bool available): the database stopped answering
            (False) or answers again (True).
        event_received(Event): every event, after its own signal; for events without
            one (the watch folder's state, for example) look at ``event.name``.
    """

    patient_created = Signal(object)
    patient_updated = Signal(object)
    patient_deleted = Signal(str)
    scan_ingested = Signal(object)
    analysis_queued = Signal(int, object, bool, int, object)
    analysis_prioritised = Signal(int, object, int)
    analysis_started = Signal(int, object)
    analysis_progressed = Signal(int, str, str, int)
    analysis_finished = Signal(int, object, object)
    analysis_failed = Signal(int, object, str)
    analysis_cancelled = Signal(int, object)
    queue_waiting_changed = Signal(object)
    notification_created = Signal(object)
    notification_updated = Signal(object)
    notification_deleted = Signal(int)
    notifications_all_read = Signal(int)
    model_state_changed = Signal(str, str, object)
    oculomics_measured = Signal(object)
    database_availability_changed = Signal(bool)
    event_received = Signal(object)

    _arrived = Signal()

    def __init__(
        self,
        bus: ev.EventBus,
        parent: QObject | None = None,
        *,
        interval_ms: int = BATCH_INTERVAL_MS,
    ) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._pending: list[ev.Event | _AfterDelivered] = []
        self._backlog: deque[ev.Event | _Progress | _AfterDelivered] = deque()
        self._scheduled = False
        self._closed = False
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self._flush)
        # Always queued, also for events published on the GUI thread itself: a handler
        # never runs inside the service call that published the event.
        self._arrived.connect(self._on_arrived, Qt.ConnectionType.QueuedConnection)
        self._unsubscribe = bus.subscribe(self._on_bus_event)

    def close(self) -> None:
        """Stop listening; events still waiting are dropped."""
        with self._lock:
            self._closed = True
            self._pending.clear()
        self._backlog.clear()
        self._unsubscribe()
        self._timer.stop()

    def call_after_delivered(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once every event published so far has been delivered: at
        once when none waits. A result read from the database after an event was
        published is then never placed before the event tells what changed (GUI
        thread)."""
        with self._lock:
            if self._pending:
                self._pending.append(_AfterDelivered(callback))
                return
        if self._backlog:
            self._backlog.append(_AfterDelivered(callback))
        else:
            callback()

    # Any thread ----------------------------------------------------------------------

    def _on_bus_event(self, event: ev.Event) -> None:
        with self._lock:
            if self._closed:
                return
            self._pending.append(event)
            if self._scheduled:
                return
            self._scheduled = True
        self._arrived.emit()

    # GUI thread ----------------------------------------------------------------------

    @Slot()
    def _on_arrived(self) -> None:
        if not self._timer.isActive():
            self._timer.start()

    @Slot()
    def _flush(self) -> None:
        with self._lock:
            events, self._pending = self._pending, []
            self._scheduled = False
        for event in events:
            if isinstance(event, ev.AnalysisProgressed):
                last = self._backlog[-1] if self._backlog else None
                if (
                    isinstance(last, _Progress)
                    and last.job_id == event.job_id
                    and last.phase == event.phase
                ):
                    last.parts.append(event.delta)
                else:
                    self._backlog.append(_Progress(event.job_id, event.phase, [event.delta]))
            else:
                self._backlog.append(event)
        self._drain()

    @Slot()
    def _drain(self) -> None:
        """Deliver the backlog for at most :data:`SLICE_S`; the rest goes out on the
        next turn of the event loop, so a burst (a full watch folder) never holds the
        GUI thread for long."""
        deadline = time.perf_counter() + SLICE_S
        while self._backlog and not self._closed:
            item = self._backlog.popleft()
            if isinstance(item, _Progress):
                self.analysis_progressed.emit(
                    item.job_id, item.phase, "".join(item.parts), len(item.parts)
                )
            elif isinstance(item, _AfterDelivered):
                item.callback()
            else:
                self._deliver(item)
            if time.perf_counter() > deadline:
                break
        if self._backlog and not self._closed:
            QTimer.singleShot(0, self._drain)

    def _deliver(self, event: ev.Event) -> None:
        match event:
            case ev.PatientCreated(patient=patient):
                self.patient_created.emit(patient)
            case ev.PatientUpdated(patient=patient):
                self.patient_updated.emit(patient)
            case ev.PatientDeleted(patient_id=patient_id):
                self.patient_deleted.emit(patient_id)
            case ev.ScanIngested(scan=scan):
                self.scan_ingested.emit(scan)
            case ev.AnalysisQueued(
                job_id=job_id,
                patient_id=patient_id,
                requeued=requeued,
                priority=priority,
                created_at=created_at,
            ):
                self.analysis_queued.emit(job_id, patient_id, requeued, int(priority), created_at)
            case ev.AnalysisPrioritised(job_id=job_id, patient_id=patient_id, priority=priority):
                self.analysis_prioritised.emit(job_id, patient_id, int(priority))
            case ev.AnalysisStarted(job_id=job_id, patient_id=patient_id):
                self.analysis_started.emit(job_id, patient_id)
            case ev.AnalysisFinished(job_id=job_id, patient_id=patient_id, analysis=analysis):
                self.analysis_finished.emit(job_id, patient_id, analysis)
            case ev.AnalysisFailed(job_id=job_id, patient_id=patient_id, reason=reason):
                self.analysis_failed.emit(job_id, patient_id, reason)
            case ev.AnalysisCancelled(job_id=job_id, patient_id=patient_id):
                self.analysis_cancelled.emit(job_id, patient_id)
            case ev.QueueWaitingChanged(waiting=waiting):
                self.queue_waiting_changed.emit(waiting)
            case ev.NotificationCreated(notification=notification):
                self.notification_created.emit(notification)
            case ev.NotificationUpdated(notification=notification):
                self.notification_updated.emit(notification)
            case ev.NotificationDeleted(notification_id=notification_id):
                self.notification_deleted.emit(notification_id)
            case ev.NotificationsAllRead(count=count):
                self.notifications_all_read.emit(count)
            case ev.ModelStateChanged(state=state, message=message, progress=progress):
                self.model_state_changed.emit(state, message, progress)
            case ev.OculomicsMeasured(measurement=measurement):
                self.oculomics_measured.emit(measurement)
            case ev.DatabaseAvailabilityChanged(available=available):
                self.database_availability_changed.emit(available)
            case _:
                pass
        self.event_received.emit(event)
