"""Notifications and their WebSocket."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import Body, Depends, Query, Request, Response, WebSocket
from fastapi.responses import JSONResponse

from ophthai_desktop.api import presenters
from ophthai_desktop.api import schemas as s
from ophthai_desktop.api.cursors import NEXT_PAGE_HEADERS, AfterCursor, Listing
from ophthai_desktop.api.deps import ActorDep, CursorCipherDep, NotificationsDep
from ophthai_desktop.api.errors import COMMON_ERRORS, documented, error_body
from ophthai_desktop.api.params import Limit, RecordId, Skip
from ophthai_desktop.api.routing import SlashRouter
from ophthai_desktop.api.security import (
    WEBSOCKET_SUBPROTOCOL,
    WEBSOCKET_TOKEN_REQUIRED,
    origin_allowed,
    origin_refusal,
    require_token,
    websocket_allowed,
    websocket_subprotocol_refusal,
)
from ophthai_desktop.core.services.notifications import notification_after

log = logging.getLogger(__name__)

router = SlashRouter(
    prefix="/api/notifications", tags=["notifications"], responses=documented(*COMMON_ERRORS)
)
guarded = [Depends(require_token)]


@router.get(
    "",
    response_model=list[s.NotificationPublic],
    dependencies=guarded,
    responses={200: {"headers": {**s.TOTAL_COUNT_HEADER, **NEXT_PAGE_HEADERS}}},
)
def list_notifications(
    notifications: NotificationsDep,
    request: Request,
    response: Response,
    cursors: CursorCipherDep,
    after: AfterCursor = None,
    skip: Skip = 0,
    limit: Limit = 100,
    unread_only: Annotated[bool, Query(description="Only the notifications not read yet")] = False,
    patient_id: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="Only this patient's notifications"),
    ] = None,
) -> list[s.NotificationPublic]:
    """Newest first; the total is in ``X-Total-Count``; a full page gives the next
    page's cursor in ``Link`` (``rel="next"``) and ``X-Next-Cursor``."""
    listing = Listing(
        cursors,
        "notifications",
        "timestamp",
        True,
        datetime,
        int,
        filters={"unread_only": unread_only, "patient_id": patient_id},
    )
    page = notifications.list_notifications(
        skip=skip,
        limit=limit,
        unread_only=unread_only,
        patient_id=patient_id,
        after=None if after is None else listing.after(after),
    )
    response.headers["X-Total-Count"] = str(page.total)
    if len(page.items) == limit:
        query = {"limit": limit, "unread_only": unread_only, "patient_id": patient_id}
        last = notification_after(page.items[-1])
        response.headers.update(listing.next_link(request.url, last, query))
    return [presenters.notification(n) for n in page.items]


@router.post(
    "",
    response_model=s.NotificationPublic,
    status_code=201,
    dependencies=guarded,
    responses={201: {"headers": s.LOCATION_HEADER}, **documented(400, 404, 413, 507)},
)
def create_notification(
    body: s.NotificationCreate,
    notifications: NotificationsDep,
    actor: ActorDep,
    response: Response,
) -> s.NotificationPublic:
    record = notifications.create_notification(
        body.message, type=body.type, patient_id=body.patient_id, actor=actor
    )
    response.headers["Location"] = f"/api/notifications/{record.id}"
    return presenters.notification(record)


@router.get("/unread-count", response_model=s.UnreadCount, dependencies=guarded)
def unread_count(notifications: NotificationsDep) -> s.UnreadCount:
    return s.UnreadCount(count=notifications.unread_count())


@router.patch(
    "/mark-all-read",
    response_model=s.CountMessage,
    dependencies=guarded,
    responses=documented(400, 413, 507),
)
def mark_all_read(
    notifications: NotificationsDep,
    actor: ActorDep,
    _body: Annotated[s.NoFields | None, Body(alias="body")] = None,
) -> s.CountMessage:
    """Mark every notification read. It takes no body; a key sent (``{"read": false}``:
    there is no "mark all unread") is a 422 rather than ignored."""
    count = notifications.mark_all_read(actor=actor)
    return s.CountMessage(message=f"{count} notifications marked read", count=count)


@router.patch(
    "/{notification_id}/read",
    response_model=s.NotificationPublic,
    dependencies=guarded,
    responses=documented(400, 404, 409, 413, 507),
)
def mark_read(
    notification_id: RecordId,
    notifications: NotificationsDep,
    actor: ActorDep,
    body: Annotated[s.MarkRead | None, Body()] = None,
) -> s.NotificationPublic:
    """Mark it read, as the seed did (no body); ``{"read": false}`` marks it unread."""
    read = body.read if body is not None else True
    return presenters.notification(notifications.mark_read(notification_id, actor=actor, read=read))


@router.get(
    "/{notification_id}",
    response_model=s.NotificationPublic,
    dependencies=guarded,
    responses=documented(404),
)
def get_notification(
    notification_id: RecordId, notifications: NotificationsDep
) -> s.NotificationPublic:
    return presenters.notification(notifications.get_notification(notification_id))


@router.delete(
    "/{notification_id}",
    response_model=s.Message,
    dependencies=guarded,
    responses=documented(404, 409, 507),
)
def delete_notification(
    notification_id: RecordId, notifications: NotificationsDep, actor: ActorDep
) -> s.Message:
    notifications.delete_notification(notification_id, actor=actor)
    return s.Message(message=f"notification {notification_id} deleted")


@router.websocket("/ws")
async def notifications_socket(websocket: WebSocket) -> None:
    """Pushes ``{"event": NAME, "data": {...}}`` frames: ``notification``,
    ``abnormal_scan``, patient changes, analysis progress and model state.

    With an API token configured, send it as ``?token=``, ``Authorization: Bearer`` or
    the subprotocol ``bearer.<token>`` beside ``ophthai.v1`` (the one echoed).
    """
    if not websocket_allowed(websocket):
        await _deny(websocket, 401, WEBSOCKET_TOKEN_REQUIRED, {"WWW-Authenticate": "Bearer"})
        return
    if not origin_allowed(websocket):
        await _deny(websocket, 403, origin_refusal(websocket))
        return
    offered: list[str] = websocket.scope.get("subprotocols", [])
    refusal = websocket_subprotocol_refusal(offered)
    if refusal is not None:
        await _deny(websocket, 400, refusal)
        return
    # Only the API's own is echoed: a bearer.<token> beside it is never sent back.
    await websocket.accept(subprotocol=WEBSOCKET_SUBPROTOCOL if offered else None)
    base = str(websocket.base_url).replace("ws://", "http://", 1).replace("wss://", "https://", 1)
    await websocket.app.state.hub.serve(websocket, base)


async def _deny(
    websocket: WebSocket, status_code: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    """Answer the handshake with an HTTP error where the server supports it."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(
            JSONResponse(error_body(detail), status_code, headers=headers)
        )
    else:
        await websocket.close(code=1008, reason=detail[:120])
