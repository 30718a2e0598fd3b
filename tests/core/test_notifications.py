"""NotificationService."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.errors import InvalidInput, NotFound
from ophthai_desktop.core.records import Actor, UnreadTally
from ophthai_desktop.core.services.notifications import notification_after
from ophthai_desktop.core.storage import models as m
from tests.support.races import meanwhile


def test_lifecycle(app_services: Application, actor: Actor) -> None:
    seen: list[ev.Event] = []
    app_services.bus.subscribe(seen.append)
    service = app_services.notifications
    assert service.unread_tally() == UnreadTally(count=0, newest_id=0)
    patient = app_services.patients.create_patient({"name": "N"}, actor=actor)
    first = service.create_notification("scan ready", patient_id=patient.id, actor=actor)
    second = service.create_notification("urgent", type="critical", actor=actor)
    assert (first.read, first.type, first.patient_id) == (False, "info", patient.id)
    assert first.timestamp.tzinfo is not None
    assert service.unread_count() == 2
    page = service.list_notifications()
    assert [n.id for n in page.items] == [second.id, first.id] and page.total == 2
    assert service.mark_read(first.id, actor=actor).read is True
    assert service.unread_count() == 1
    assert service.unread_tally() == UnreadTally(count=1, newest_id=second.id)
    assert [n.id for n in service.list_notifications(unread_only=True).items] == [second.id]
    assert [n.id for n in service.list_notifications(patient_id=patient.id).items] == [first.id]
    assert service.mark_all_read(actor=actor) == 1
    assert service.unread_count() == 0
    service.delete_notification(first.id, actor=actor)
    with pytest.raises(NotFound):
        service.get_notification(first.id)
    with pytest.raises(NotFound):
        service.mark_read(first.id, actor=actor)
    names = [type(e).__name__ for e in seen if not isinstance(e, ev.PatientCreated)]
    assert names == [
        "NotificationCreated",
        "NotificationCreated",
        "NotificationUpdated",
        "NotificationsAllRead",
        "NotificationDeleted",
    ]


def test_marking_all_read_with_none_unread_announces_nothing(
    app_services: Application, actor: Actor
) -> None:
    seen: list[ev.Event] = []
    app_services.bus.subscribe(seen.append)

    assert app_services.notifications.mark_all_read(actor=actor) == 0

    assert seen == []


def test_unknown_patient_is_not_found_and_nothing_is_stored(
    app_services: Application, actor: Actor
) -> None:
    with pytest.raises(NotFound):
        app_services.notifications.create_notification("x", patient_id="ghost", actor=actor)
    assert app_services.notifications.list_notifications().total == 0


@pytest.mark.parametrize(
    ("message", "kind", "field"), [("", "info", "message"), ("x", "loud", "type")]
)
def test_invalid_input(
    app_services: Application, actor: Actor, message: str, kind: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        app_services.notifications.create_notification(message, type=kind, actor=actor)
    assert caught.value.field == field


@pytest.mark.parametrize("patient_id", ["", "  "])
def test_an_empty_patient_id_is_invalid_not_an_unknown_patient(
    app_services: Application, actor: Actor, patient_id: str
) -> None:
    """Not "patient  not found": the id is missing, and the error says to leave it out."""
    service = app_services.notifications
    with pytest.raises(InvalidInput, match="must not be empty") as created:
        service.create_notification("x", patient_id=patient_id, actor=actor)
    with pytest.raises(InvalidInput, match="must not be empty") as listed:
        service.list_notifications(patient_id=patient_id)

    assert created.value.field == listed.value.field == "patient_id"
    assert service.list_notifications().total == 0


@pytest.mark.parametrize("change", ["create", "mark_read", "mark_unread", "delete"])
def test_a_notification_changed_as_its_patient_is_deleted_is_not_found_or_done_first(
    app_services: Application, actor: Actor, change: str
) -> None:
    """The patient is deleted between the service's look at the patient (or at the
    notification) and its write. Before, the write found the row gone: SQLAlchemy's
    IntegrityError (creating) or StaleDataError (marking) came out of the service, an
    "unexpected error" in the window; deleting said the notification was deleted a
    second time. Now either the change comes first or the notification is not found."""
    app = app_services
    service = app.notifications
    seen: list[ev.Event] = []
    app.bus.subscribe(seen.append)
    patient = app.patients.create_patient({"name": "N"}, actor=actor)
    note = service.create_notification("scan ready", patient_id=patient.id, actor=actor)
    if change == "mark_unread":
        service.mark_read(note.id, actor=actor)
    marker = "FROM patients" if change == "create" else "notifications"

    def delete() -> None:
        app.patients.delete_patient(patient.id, actor=actor)

    with meanwhile(app, marker, delete):
        try:
            if change == "create":
                service.create_notification("later", patient_id=patient.id, actor=actor)
            elif change == "delete":
                service.delete_notification(note.id, actor=actor)
            else:
                service.mark_read(note.id, actor=actor, read=change == "mark_read")
        except NotFound:
            pass
    assert not app.patients.exists(patient.id)
    assert service.list_notifications().total == 0
    deleted = [e.notification_id for e in seen if isinstance(e, ev.NotificationDeleted)]
    assert len(deleted) == len(set(deleted))


def test_the_next_page_after_the_last_one_held_skips_and_repeats_none(
    app_services: Application, actor: Actor
) -> None:
    """A page read by position after a deletion skipped a notification (never listed
    until the list was read from the top), after a creation repeated one; read after
    the last notification held (ties on the time broken by the id), neither."""
    service = app_services.notifications
    made = [service.create_notification(f"note {i}", actor=actor) for i in range(7)]
    same_time = made[3].timestamp
    with app_services.db.session() as session:  # ties across the pages' edge
        session.execute(
            update(m.Notification)
            .where(m.Notification.id.in_([n.id for n in made[1:5]]))
            .values(timestamp=same_time)
        )
    first = service.list_notifications(limit=3)
    assert [n.message for n in first.items] == ["note 6", "note 5", "note 4"]

    service.delete_notification(first.items[1].id, actor=actor)  # by another window
    service.create_notification("newer", actor=actor)
    rest = service.list_notifications(limit=3, after=notification_after(first.items[-1]))

    assert [n.message for n in rest.items] == ["note 3", "note 2", "note 1"]
    assert rest.total == 7  # every one, not those after the cursor
    last = service.list_notifications(limit=3, after=notification_after(rest.items[-1]))
    assert [n.message for n in last.items] == ["note 0"]
