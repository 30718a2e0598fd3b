"""The audit trail: who changed which record, when, and through which door.

Entries are written in the same transaction as the change they describe, so a change
without its entry (or the reverse) cannot be committed. Details name the fields that
changed, never their values, so no patient identifier lands in the trail twice.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ophthai_desktop.core.records import Actor, AuditRecord, Page
from ophthai_desktop.core.storage import Database
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.storage.to_records import audit_record


class AuditService:
    """Records and lists audit events."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    def record(
        session: Session,
        actor: Actor,
        action: str,
        entity_type: str,
        entity_id: str | int,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Add an entry to ``session``; it commits with the change it describes."""
        session.add(
            m.AuditEvent(
                actor=actor.who[:200],
                origin=actor.via[:32],
                action=action,
                entity_type=entity_type,
                entity_id=str(entity_id),
                details=details or {},
            )
        )

    def list_events(
        self,
        *,
        entity_type: str | None = None,
        entity_id: str | None = None,
        skip: int = 0,
        limit: int = 100,
    ) -> Page[AuditRecord]:
        """Newest first, optionally for one record."""
        query = select(m.AuditEvent)
        if entity_type:
            query = query.where(m.AuditEvent.entity_type == entity_type)
        if entity_id:
            query = query.where(m.AuditEvent.entity_id == entity_id)
        with self._db.session() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
            rows = session.scalars(
                query.order_by(m.AuditEvent.at.desc(), m.AuditEvent.id.desc())
                .offset(skip)
                .limit(limit)
            ).all()
            return Page(tuple(audit_record(r) for r in rows), total, skip, limit)
