"""Typed dependencies: routes receive services, never database sessions."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from ophthai_desktop.api.cursors import CursorCipher
from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services import (
    NotificationService,
    OculomicsService,
    PatientService,
)


def get_application(connection: HTTPConnection) -> Application:
    application: Application = connection.app.state.application
    return application


def get_patients(connection: HTTPConnection) -> PatientService:
    return get_application(connection).patients


def get_notifications(connection: HTTPConnection) -> NotificationService:
    return get_application(connection).notifications


def get_oculomics(connection: HTTPConnection) -> OculomicsService:
    return get_application(connection).oculomics


def get_cursor_cipher(connection: HTTPConnection) -> CursorCipher:
    """What seals the page cursors, with the data folder's key."""
    cipher: CursorCipher = connection.app.state.cursor_cipher
    return cipher


def get_actor(request: Request) -> Actor:
    """The API client's address, for the audit trail."""
    host = request.client.host if request.client else "unknown"
    return Actor(who=host, via="api")


def get_base_url(request: Request) -> str:
    """The URL clients reached us at, ending in ``/``, for absolute links."""
    return str(request.base_url)


ApplicationDep = Annotated[Application, Depends(get_application)]
PatientsDep = Annotated[PatientService, Depends(get_patients)]
NotificationsDep = Annotated[NotificationService, Depends(get_notifications)]
OculomicsDep = Annotated[OculomicsService, Depends(get_oculomics)]
CursorCipherDep = Annotated[CursorCipher, Depends(get_cursor_cipher)]
ActorDep = Annotated[Actor, Depends(get_actor)]
BaseUrlDep = Annotated[str, Depends(get_base_url)]
