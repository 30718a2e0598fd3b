"""The audit trail: who changed which record, when, and through which door.

Entries are written in the same transaction as the change they describe, so a change
without its entry (or the reverse) cannot be committed. Details name the fields that
changed, never their values, so no patient identifier lands in the trail twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ophthai_desktop.core.paging import fetch_page
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
            m.AuditEvent(**AuditService.values(actor, action, entity_type, entity_id, details))
        )

    def record_action(
        self,
        actor: Actor,
        action: str,
        entity_type: str,
        entity_id: str | int,
        details: dict[str, Any] | None = None,
    ) -> None:
        """Record an action that changes no record (an export, say) on its own."""
        with self._db.session() as session:
            self.record(session, actor, action, entity_type, entity_id, details)

    @staticmethod
    def values(
        actor: Actor,
        action: str,
        entity_type: str,
        entity_id: str | int,
        details: dict[str, Any] | None = None,
        *,
        at: datetime | None = None,
    ) -> dict[str, Any]:
        """An entry's column values (for callers that insert many rows at once)."""
        return {
            "at": at or m.utcnow(),
            "actor": actor.who[:200],
            "origin": actor.via[:32],
            "action": action,
            "entity_type": entity_type,
            "entity_id": str(entity_id),
            "details": details or {},
        }

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
            return fetch_page(
                session,
                query,
                order_by=(m.AuditEvent.at.desc(), m.AuditEvent.id.desc()),
                skip=skip,
                limit=limit,
                convert=audit_record,
            )
