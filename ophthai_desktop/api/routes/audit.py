"""The audit trail, read-only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Query, Response

from ophthai_desktop.api import presenters
from ophthai_desktop.api.deps import ApplicationDep
from ophthai_desktop.api.errors import COMMON_ERRORS, documented
from ophthai_desktop.api.params import Limit, Skip
from ophthai_desktop.api.routing import SlashRouter
from ophthai_desktop.api.schemas import TOTAL_COUNT_HEADER, AuditEventPublic
from ophthai_desktop.api.security import require_token

router = SlashRouter(
    prefix="/api/audit",
    tags=["audit"],
    dependencies=[Depends(require_token)],
    responses=documented(*COMMON_ERRORS),
)


@router.get(
    "",
    response_model=list[AuditEventPublic],
    responses={200: {"headers": TOTAL_COUNT_HEADER}},
)
def list_audit_events(
    app: ApplicationDep,
    response: Response,
    entity_type: Annotated[str | None, Query(max_length=32)] = None,
    entity_id: Annotated[str | None, Query(max_length=64)] = None,
    skip: Skip = 0,
    limit: Limit = 100,
) -> list[dict[str, Any]]:
    """Who did what to which record, and when; newest first."""
    page = app.audit.list_events(
        entity_type=entity_type, entity_id=entity_id, skip=skip, limit=limit
    )
    response.headers["X-Total-Count"] = str(page.total)
    return [
        {
            "id": e.id,
            "at": presenters.timestamp(e.at),
            "actor": e.actor,
            "origin": e.origin,
            "action": e.action,
            "entityType": e.entity_type,
            "entityId": e.entity_id,
            "details": e.details,
        }
        for e in page.items
    ]
