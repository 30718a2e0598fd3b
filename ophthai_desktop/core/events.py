"""A thread-safe event bus carrying past-tense events.

Publishers call :meth:`EventBus.publish` from any thread. Subscribers are called on the
publisher's thread and must only hand the event off (the Qt bridge re-emits it as a
queued signal; the WebSocket hub schedules it on the server loop). A subscriber that
raises is logged and does not stop delivery to the others.

Services publish after their commit, outside the patient's lock, so a change that
committed before the patient's deletion can be published after the deletion's
:class:`PatientDeleted`. The bus drops such late events (those that would show the
patient or their records again, :meth:`Event.shows_patient`): after a patient's
``patient_deleted`` nothing more of theirs goes out.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from ophthai_desktop.core.domain import JobPriority
from ophthai_desktop.core.log_safety import safe_description

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """Base of all events. ``name`` is the wire name used on the WebSocket."""

    name: ClassVar[str] = "event"

    def payload(self) -> dict[str, Any]:
        """The event's data as plain JSON-able values."""
        return asdict(self)

    def shows_patient(self) -> str | None:
        """The patient whose record, or one of whose records, a client shows on this
        event; published after that patient's deletion it would show them again, and
        the bus drops it. None for events about nobody, and for the end of an analysis
        (someone may be waiting for it; it shows nothing new)."""
        return None


@dataclass(frozen=True)
class NotificationCreated(Event):
    name: ClassVar[str] = "notification"
    notification: Any  # NotificationRecord

    def shows_patient(self) -> str | None:
        return self.notification.patient_id


@dataclass(frozen=True)
class NotificationUpdated(Event):
    name: ClassVar[str] = "notification_updated"
    notification: Any  # NotificationRecord

    def shows_patient(self) -> str | None:
        return self.notification.patient_id


@dataclass(frozen=True)
class NotificationsAllRead(Event):
    name: ClassVar[str] = "notifications_all_read"
    count: int


@dataclass(frozen=True)
class NotificationDeleted(Event):
    name: ClassVar[str] = "notification_deleted"
    notification_id: int


@dataclass(frozen=True)
class PatientCreated(Event):
    name: ClassVar[str] = "patient_created"
    patient: Any  # PatientRecord

    def shows_patient(self) -> str | None:
        return self.patient.id


@dataclass(frozen=True)
class PatientUpdated(Event):
    name: ClassVar[str] = "patient_updated"
    patient: Any  # PatientRecord

    def shows_patient(self) -> str | None:
        return self.patient.id


@dataclass(frozen=True)
class PatientDeleted(Event):
    """The patient is gone. ``created_at`` tells them from a patient created later
    under the same id (a client may choose ids)."""

    name: ClassVar[str] = "patient_deleted"
    patient_id: str
    created_at: datetime | None = None


@dataclass(frozen=True)
class ScanIngested(Event):
    name: ClassVar[str] = "scan_ingested"
    scan: Any  # ScanRecord

    def shows_patient(self) -> str | None:
        return self.scan.patient_id


@dataclass(frozen=True)
class OculomicsMeasured(Event):
    name: ClassVar[str] = "oculomics_measured"
    measurement: Any  # OculomicsRecord

    def shows_patient(self) -> str | None:
        return self.measurement.patient_id


@dataclass(frozen=True)
class AnalysisQueued(Event):
    """An analysis job is queued (new, or a running one put back). ``priority`` says
    which queued jobs the worker takes first (:class:`JobPriority`); it only rises
    afterwards (:class:`AnalysisPrioritised`). ``created_at``: when the job was first
    queued (the job's own time, which a job put back keeps; among jobs of one priority
    the oldest runs first)."""

    name: ClassVar[str] = "analysis_queued"
    job_id: int
    patient_id: str | None
    scan_id: int | None
    requeued: bool = False  # a running analysis put back (the model was unloaded)
    priority: JobPriority = field(kw_only=True)
    created_at: datetime = field(kw_only=True)

    def shows_patient(self) -> str | None:
        return self.patient_id


@dataclass(frozen=True)
class AnalysisPrioritised(Event):
    """A queued analysis was moved ahead: someone asked for the analysis of a scan the
    watch folder had queued, and the request joined that job (now ``priority``)."""

    name: ClassVar[str] = "analysis_prioritised"
    job_id: int
    patient_id: str | None
    scan_id: int | None
    priority: JobPriority

    def shows_patient(self) -> str | None:
        return self.patient_id


@dataclass(frozen=True)
class QueueWaitingChanged(Event):
    """Why the worker takes no queued analysis changed: ``waiting`` says why every
    queued job now waits (the model missing, failed to load, unloaded, loading) and
    what makes it run; None when the worker takes them again."""

    name: ClassVar[str] = "queue_waiting"
    waiting: str | None


@dataclass(frozen=True)
class AnalysisStarted(Event):
    name: ClassVar[str] = "analysis_started"
    job_id: int
    patient_id: str | None

    def shows_patient(self) -> str | None:
        return self.patient_id


@dataclass(frozen=True)
class AnalysisProgressed(Event):
    """A text delta of the model's output, as it is generated. ``seq`` numbers the
    deltas of one run of the job from 0, so that a client that connects (or reconnects)
    mid-stream can tell it missed the text before its first delta."""

    name: ClassVar[str] = "analysis_progress"
    job_id: int
    delta: str
    phase: str = "reasoning"  # "reasoning" or "answer"
    seq: int = 0


@dataclass(frozen=True)
class AnalysisFinished(Event):
    name: ClassVar[str] = "analysis_finished"
    job_id: int
    patient_id: str | None
    analysis: Any  # AnalysisRecord


@dataclass(frozen=True)
class AnalysisFailed(Event):
    name: ClassVar[str] = "analysis_failed"
    job_id: int
    patient_id: str | None
    reason: str


@dataclass(frozen=True)
class AnalysisCancelled(Event):
    name: ClassVar[str] = "analysis_cancelled"
    job_id: int
    patient_id: str | None


@dataclass(frozen=True)
class AnalysisCancelRequested(Event):
    """Someone asked to stop a running analysis; the worker acts on it."""

    name: ClassVar[str] = "analysis_cancel_requested"
    job_id: int


@dataclass(frozen=True)
class AbnormalScanDetected(Event):
    """An AI result that is not normal; goes out as ``abnormal_scan`` with the
    persisted critical notification's fields plus the finding."""

    name: ClassVar[str] = "abnormal_scan"
    notification: Any  # NotificationRecord
    label: str
    confidence: float | None
    probabilities: dict[str, float] = field(default_factory=dict)
    source: str = "ai"

    def shows_patient(self) -> str | None:
        return self.notification.patient_id if self.notification else None


@dataclass(frozen=True)
class ModelStateChanged(Event):
    name: ClassVar[str] = "model_state"
    state: str
    message: str = ""
    progress: float | None = None


@dataclass(frozen=True)
class DatabaseAvailabilityChanged(Event):
    """The database stopped answering (``available`` False: its server restarting, a
    locked SQLite file) or answers again; published once each, not per refused call."""

    name: ClassVar[str] = "database_availability"
    available: bool


@dataclass(frozen=True)
class WatcherStateChanged(Event):
    """The watch folder started, stopped, paused, resumed or failed.

    ``state`` is ``stopped``, ``running``, ``paused`` or ``error``; ``message`` says why
    (an error, or the fallback to polling); ``polling`` tells which observer runs now,
    ``use_polling`` whether the settings ask for the polling one (``watch_use_polling``),
    whatever runs: both as ``GET /api/watch-folder`` answers them.
    """

    name: ClassVar[str] = "watcher_state"
    state: str
    message: str = ""
    folder: str = ""
    polling: bool = False
    use_polling: bool = False


@dataclass(frozen=True)
class IngestFinished(Event):
    """One file from the watch folder was dealt with.

    ``outcome`` is ``ingested`` (a new patient), ``attached`` (a scan of an existing
    patient), ``duplicate`` (bytes already taken in; no new record) or ``failed`` (moved
    to ``failed/`` with ``reason``). ``moved_to`` is the file's new name, or empty when
    it could not be moved. Both names are as a person is shown them (``shown_name``:
    control and format characters escaped, ``\\x1b``, ``\\n``, ``\\u202e``).
    """

    name: ClassVar[str] = "ingest_finished"
    outcome: str
    file_name: str
    sha256: str | None
    patient_id: str | None = None
    scan_id: int | None = None
    job_id: int | None = None
    reason: str | None = None
    moved_to: str = ""


Subscriber = Callable[[Event], None]

#: How many deleted patients the bus remembers to drop their late events: those come
#: within moments of the deletion, from the few threads that write.
REMEMBERED_DELETIONS = 4096


class EventBus:
    """Fan-out of events to subscribers; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()
        # Held while a patient's event is checked and handed to the subscribers, so
        # that one published before the deletion's is delivered before it too.
        # Re-entrant: a subscriber may publish.
        self._patients_lock = threading.RLock()
        #: Deleted patients' ids, oldest first, with their records' creation times.
        self._deleted: OrderedDict[str, datetime | None] = OrderedDict()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it again."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber on the calling thread (unless it
        would show a patient already announced deleted)."""
        if not isinstance(event, PatientDeleted) and event.shows_patient() is None:
            self._deliver(event)  # token deltas and the like: no lock on the hot path
            return
        with self._patients_lock:
            if self._is_late(event):
                log.debug("dropped a late %s of a deleted patient", type(event).__name__)
                return
            self._deliver(event)

    def _is_late(self, event: Event) -> bool:
        """Whether ``event`` shows a patient already deleted; notes deletions."""
        if isinstance(event, PatientDeleted):
            self._deleted[event.patient_id] = event.created_at
            self._deleted.move_to_end(event.patient_id)
            while len(self._deleted) > REMEMBERED_DELETIONS:
                self._deleted.popitem(last=False)
            return False
        patient_id = event.shows_patient()
        if patient_id is None or patient_id not in self._deleted:
            return False
        deleted_created_at = self._deleted[patient_id]
        if isinstance(event, PatientCreated | PatientUpdated) and (
            deleted_created_at is None or event.patient.created_at > deleted_created_at
        ):
            del self._deleted[patient_id]  # a new patient under the deleted one's id
            return False
        return True

    def _deliver(self, event: Event) -> None:
        for subscriber in self._subscribers:  # a snapshot: the tuple is replaced, not mutated
            try:
                subscriber(event)
            except Exception as exc:
                # Not its text: a subscriber's error can quote the event's record (a name).
                log.error(
                    "event subscriber failed on %s: %s", type(event).__name__, safe_description(exc)
                )
