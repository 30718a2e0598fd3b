"""The event bus: thread-safe fan-out, failing subscribers isolated, nothing of a
patient after their deletion."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from ophthai_desktop.core.events import (
    AnalysisFinished,
    Event,
    EventBus,
    NotificationDeleted,
    PatientDeleted,
    PatientUpdated,
)


def test_publish_from_many_threads_reaches_every_subscriber() -> None:
    bus = EventBus()
    received: list[int] = []
    lock = threading.Lock()

    def subscriber(event: object) -> None:
        assert isinstance(event, NotificationDeleted)
        with lock:
            received.append(event.notification_id)

    bus.subscribe(subscriber)

    def publish(start: int) -> None:
        for i in range(start, start + 500):
            bus.publish(NotificationDeleted(i))

    threads = [threading.Thread(target=publish, args=(k * 500,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(received) == list(range(2000))


def test_failing_subscriber_does_not_stop_others_and_unsubscribe_works() -> None:
    bus = EventBus()
    got: list[object] = []

    def broken(_event: object) -> None:
        raise RuntimeError("boom")

    bus.subscribe(broken)
    unsubscribe = bus.subscribe(got.append)
    bus.publish(NotificationDeleted(1))
    unsubscribe()
    bus.publish(NotificationDeleted(2))
    assert got == [NotificationDeleted(1)]


def test_a_failing_subscriber_is_logged_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A subscriber's error can quote the record it was given (a patient's name)."""
    bus = EventBus()

    def broken(_event: object) -> None:
        raise ValueError("cannot show Jane Doeling")

    bus.subscribe(broken)
    with caplog.at_level(logging.ERROR, logger="ophthai_desktop.core.events"):
        bus.publish(NotificationDeleted(1))

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "subscriber failed on NotificationDeleted: ValueError at " in logged
    assert "Doeling" not in logged and all(r.exc_info is None for r in caplog.records)


def test_events_have_wire_names() -> None:
    assert NotificationDeleted(3).name == "notification_deleted"
    assert NotificationDeleted(3).payload() == {"notification_id": 3}


BORN = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_patients_event_being_delivered_goes_out_before_their_deletion() -> None:
    """The deletion is published on another thread while the update is being handed
    to the subscribers: it waits, so the subscribers hear the two in that order."""
    bus = EventBus()
    heard: list[str] = []
    deleter: list[threading.Thread] = []

    def subscriber(event: Event) -> None:
        if isinstance(event, PatientUpdated) and not deleter:
            deleter.append(threading.Thread(target=bus.publish, args=(PatientDeleted("p1"),)))
            deleter[0].start()
            deleter[0].join(0.5)  # blocked while this delivery lasts
        heard.append(event.name)

    bus.subscribe(subscriber)
    bus.publish(PatientUpdated(SimpleNamespace(id="p1", created_at=BORN)))
    deleter[0].join(5)
    assert heard == ["patient_updated", "patient_deleted"]


def test_the_end_of_a_deleted_patients_analysis_still_goes_out() -> None:
    """Whoever waits for the analysis hears that it ended; a patient created later
    under the deleted one's id is announced."""
    bus = EventBus()
    heard: list[Event] = []
    bus.subscribe(heard.append)
    bus.publish(PatientDeleted("p1", BORN))
    late = PatientUpdated(SimpleNamespace(id="p1", created_at=BORN))
    bus.publish(late)
    bus.publish(AnalysisFinished(7, "p1", None))
    again = PatientUpdated(SimpleNamespace(id="p1", created_at=datetime.now(UTC)))
    bus.publish(again)
    assert [e.name for e in heard] == ["patient_deleted", "analysis_finished", "patient_updated"]
    assert heard[-1] is again
