"""Notifications: create, list, count unread, mark read, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from ophthai_desktop.core.domain import NotificationType
from ophthai_desktop.core.errors import InvalidInput, NotFound
from ophthai_desktop.core.events import (
    EventBus,
    NotificationCreated,
    NotificationDeleted,
    NotificationsAllRead,
    NotificationUpdated,
)
from ophthai_desktop.core.paging import After, fetch_page, rows_after
from ophthai_desktop.core.records import Actor, NotificationRecord, Page, UnreadTally
from ophthai_desktop.core.services.audit import AuditService
from ophthai_desktop.core.services.patient_fields import check_patient_reference
from ophthai_desktop.core.services.patients import PatientService
from ophthai_desktop.core.storage import Database
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.storage.to_records import notification_record

MAX_MESSAGE_CHARS = 2000


class NotificationService:
    """The clinician's notifications; every change is published on the event bus."""

    def __init__(self, db: Database, bus: EventBus) -> None:
        self._db = db
        self._bus = bus

    def create_notification(
        self,
        message: str,
        *,
        type: str = NotificationType.INFO,
        patient_id: str | None = None,
        actor: Actor,
    ) -> NotificationRecord:
        """Persist a notification and publish :class:`NotificationCreated`."""
        check_patient_reference(patient_id)
        with self._db.session() as session:
            if patient_id is not None:
                # Locked, as a deletion locks the patient: one deleted meanwhile is
                # deleted after this commit (with the notification) or not found.
                PatientService.lock_in(session, patient_id)
            record = self.create_in(session, message, type=type, patient_id=patient_id)
            AuditService.record(session, actor, "create", "notification", record.id)
        self._bus.publish(NotificationCreated(record))
        return record

    @staticmethod
    def create_in(
        session: Session,
        message: str,
        *,
        type: str,
        patient_id: str | None,
        analysis_id: int | None = None,
        job_id: int | None = None,
        warning: bool = False,
    ) -> NotificationRecord:
        """Add a notification inside a caller's transaction; the caller publishes.
        ``analysis_id``: the analysis that raised it (stored in the same transaction);
        ``job_id``: the analysis job whose failure it tells; ``warning``: the app means
        it as one (see :attr:`NotificationRecord.warning`)."""
        check_patient_reference(patient_id)
        if patient_id is not None and session.get(m.Patient, patient_id) is None:
            raise NotFound(f"patient {patient_id} not found")
        values = NotificationService.new_values(message, type=type, patient_id=patient_id)
        row = m.Notification(
            **values | {"analysis_id": analysis_id, "job_id": job_id, "warning": warning}
        )
        session.add(row)
        session.flush()
        return notification_record(row)

    @staticmethod
    def new_values(
        message: str, *, type: str, patient_id: str | None, now: datetime | None = None
    ) -> dict[str, Any]:
        """A checked, unread notification's column values (for callers that insert many
        rows at once; they make sure the patient exists)."""
        text = (message or "").strip()
        if not text:
            raise InvalidInput("the message is empty", field="message")
        if len(text) > MAX_MESSAGE_CHARS:
            raise InvalidInput(
                f"the message is longer than {MAX_MESSAGE_CHARS} characters", field="message"
            )
        try:
            kind = NotificationType(type).value
        except ValueError as exc:
            raise InvalidInput("type must be info, critical or success", field="type") from exc
        return {
            "patient_id": patient_id,
            "message": text,
            "type": kind,
            "warning": False,
            "read": False,
            "timestamp": now or m.utcnow(),
        }

    def get_notification(self, notification_id: int) -> NotificationRecord:
        with self._db.session() as session:
            return notification_record(self._get(session, notification_id))

    def list_notifications(
        self,
        *,
        skip: int = 0,
        limit: int = 100,
        unread_only: bool = False,
        patient_id: str | None = None,
        after: After | None = None,
    ) -> Page[NotificationRecord]:
        """Newest first; with ``after`` (:func:`notification_after` of the last one the
        reader holds), those older than it: the next page whatever was created or
        deleted since the last."""
        check_patient_reference(patient_id)
        query = select(m.Notification)
        if unread_only:
            query = query.where(m.Notification.read.is_(False))
        if patient_id is not None:
            query = query.where(m.Notification.patient_id == patient_id)
        with self._db.session() as session:
            return fetch_page(
                session,
                query,
                order_by=(m.Notification.timestamp.desc(), m.Notification.id.desc()),
                skip=skip,
                limit=limit,
                convert=notification_record,
                after=None
                if after is None
                else rows_after(
                    m.Notification.timestamp, m.Notification.id, after, descending=True
                ),
            )

    def unread_count(self) -> int:
        with self._db.session() as session:
            return (
                session.scalar(
                    select(func.count(m.Notification.id)).where(m.Notification.read.is_(False))
                )
                or 0
            )

    def unread_tally(self) -> UnreadTally:
        """The unread count with the newest notification's id, read in one statement:
        a window that moves its badge at each new notification heard adds one only
        past that id (one stored before it is in the count, its event later or not)."""
        unread = func.count(m.Notification.id).filter(m.Notification.read.is_(False))
        with self._db.session() as session:
            count, newest = session.execute(
                select(unread, func.coalesce(func.max(m.Notification.id), 0))
            ).one()
        return UnreadTally(count=int(count or 0), newest_id=int(newest))

    def mark_read(
        self, notification_id: int, *, actor: Actor, read: bool = True
    ) -> NotificationRecord:
        """Mark the notification read (or, with ``read=False``, unread again); a
        notification already so is left alone, and nothing is announced."""
        with self._db.session() as session:
            # One statement, as the job queue's: read first and written at the commit,
            # a notification deleted with its patient in between came out as
            # SQLAlchemy's StaleDataError instead of NotFound.
            row = session.scalars(
                update(m.Notification)
                .where(m.Notification.id == notification_id, m.Notification.read != read)
                .values(read=read)
                .returning(m.Notification)
            ).first()
            changed = row is not None
            if row is None:
                row = self._get(session, notification_id)
            else:
                AuditService.record(
                    session, actor, "update", "notification", row.id, {"read": read}
                )
                session.flush()
            record = notification_record(row)
        if changed:
            self._bus.publish(NotificationUpdated(record))
        return record

    def mark_all_read(self, *, actor: Actor) -> int:
        """Mark every unread notification read; returns how many changed."""
        with self._db.session() as session:
            result = session.execute(
                update(m.Notification).where(m.Notification.read.is_(False)).values(read=True)
            )
            count = int(getattr(result, "rowcount", 0) or 0)
            if count:  # none were unread: nothing changed, as mark_read has it
                AuditService.record(session, actor, "update", "notification", "*", {"read": count})
        if count:  # nor anything for anyone to refresh
            self._bus.publish(NotificationsAllRead(count))
        return count

    def delete_notification(self, notification_id: int, *, actor: Actor) -> None:
        with self._db.session() as session:
            patient_id = self._get(session, notification_id).patient_id
            if patient_id is not None:
                # Its patient first, as their deletion locks them: that deletion either
                # comes first (the notification is gone) or reads it gone, and does not
                # announce it deleted a second time.
                try:
                    PatientService.lock_in(session, patient_id)
                except NotFound as exc:
                    raise NotFound(f"notification {notification_id} not found") from exc
            deleted = session.execute(
                delete(m.Notification).where(m.Notification.id == notification_id)
            )
            if int(getattr(deleted, "rowcount", 0) or 0) != 1:
                raise NotFound(f"notification {notification_id} not found")
            AuditService.record(session, actor, "delete", "notification", notification_id)
        self._bus.publish(NotificationDeleted(notification_id))

    @staticmethod
    def _get(session: Session, notification_id: int) -> m.Notification:
        row = session.get(m.Notification, notification_id)
        if row is None:
            raise NotFound(f"notification {notification_id} not found")
        return row


def notification_after(note: NotificationRecord) -> After:
    """Where the page after ``note`` starts (``list_notifications(after=...)``)."""
    return After(note.timestamp, note.id)
