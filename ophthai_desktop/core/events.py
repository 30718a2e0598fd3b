"""A thread-safe event bus carrying past-tense events.

Publishers call :meth:`EventBus.publish` from any thread. Subscribers are called on the
publisher's thread and must only hand the event off (the Qt bridge re-emits it as a
queued signal; the WebSocket hub schedules it on the server loop). A subscriber that
raises is logged and does not stop delivery to the others.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """Base of all events. ``name`` is the wire name used on the WebSocket."""

    name: ClassVar[str] = "event"

    def payload(self) -> dict[str, Any]:
        """The event's data as plain JSON-able values."""
        return asdict(self)


@dataclass(frozen=True)
class NotificationCreated(Event):
    name: ClassVar[str] = "notification"
    notification: Any  # NotificationRecord


@dataclass(frozen=True)
class NotificationUpdated(Event):
    name: ClassVar[str] = "notification_updated"
    notification: Any  # NotificationRecord


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


@dataclass(frozen=True)
class PatientUpdated(Event):
    name: ClassVar[str] = "patient_updated"
    patient: Any  # PatientRecord


@dataclass(frozen=True)
class PatientDeleted(Event):
    name: ClassVar[str] = "patient_deleted"
    patient_id: str


@dataclass(frozen=True)
class ScanIngested(Event):
    name: ClassVar[str] = "scan_ingested"
    scan: Any  # ScanRecord


@dataclass(frozen=True)
class OculomicsMeasured(Event):
    name: ClassVar[str] = "oculomics_measured"
    measurement: Any  # OculomicsRecord


@dataclass(frozen=True)
class AnalysisQueued(Event):
    name: ClassVar[str] = "analysis_queued"
    job_id: int
    patient_id: str | None
    scan_id: int | None
    requeued: bool = False  # a running analysis put back (the model was unloaded)


@dataclass(frozen=True)
class AnalysisStarted(Event):
    name: ClassVar[str] = "analysis_started"
    job_id: int
    patient_id: str | None


@dataclass(frozen=True)
class AnalysisProgressed(Event):
    """A text delta of the model's output, as it is generated."""

    name: ClassVar[str] = "analysis_progress"
    job_id: int
    delta: str
    phase: str = "reasoning"  # "reasoning" or "answer"


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


@dataclass(frozen=True)
class ModelStateChanged(Event):
    name: ClassVar[str] = "model_state"
    state: str
    message: str = ""
    progress: float | None = None


@dataclass(frozen=True)
class WatcherStateChanged(Event):
    """The watch folder started, stopped, paused, resumed or failed.

    ``state`` is ``stopped``, ``running``, ``paused`` or ``error``; ``message`` says why
    (an error, or the fallback to polling); ``polling`` tells which observer runs.
    """

    name: ClassVar[str] = "watcher_state"
    state: str
    message: str = ""
    folder: str = ""
    polling: bool = False


@dataclass(frozen=True)
class IngestFinished(Event):
    """One file from the watch folder was dealt with.

    ``outcome`` is ``ingested`` (a new patient), ``attached`` (a scan of an existing
    patient), ``duplicate`` (bytes already taken in; no new record) or ``failed`` (moved
    to ``failed/`` with ``reason``). ``moved_to`` is the file's new name, or empty when
    it could not be moved.
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


class EventBus:
    """Fan-out of events to subscribers; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it again."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber on the calling thread."""
        for subscriber in self._subscribers:  # a snapshot: the tuple is replaced, not mutated
            try:
                subscriber(event)
            except Exception:
                log.exception("event subscriber failed on %s", type(event).__name__)
