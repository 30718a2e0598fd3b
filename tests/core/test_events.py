"""The event bus: thread-safe fan-out, failing subscribers isolated."""

from __future__ import annotations

import threading

from ophthai_desktop.core.events import EventBus, NotificationDeleted


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


def test_events_have_wire_names() -> None:
    assert NotificationDeleted(3).name == "notification_deleted"
    assert NotificationDeleted(3).payload() == {"notification_id": 3}
