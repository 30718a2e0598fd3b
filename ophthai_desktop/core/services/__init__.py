"""Core services: one implementation of every operation, for every adapter."""

from ophthai_desktop.core.services.audit import AuditService
from ophthai_desktop.core.services.notifications import NotificationService
from ophthai_desktop.core.services.oculomics import OculomicsService
from ophthai_desktop.core.services.patients import PatientService

__all__ = ["AuditService", "NotificationService", "OculomicsService", "PatientService"]
