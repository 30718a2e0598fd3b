"""What every controller works with: the core services, the event bridge, the task
runner and who is using the window."""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass
from typing import Any

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.records import Actor
from ophthai_desktop.ui.bridge import EventBridge
from ophthai_desktop.ui.tasks import TaskRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiState:
    """The embedded API server as the launcher reports it (a plain value: ``ui`` does
    not import ``api``)."""

    enabled: bool
    url: str | None = None
    error: str | None = None
    starting: bool = False


def clinician_name(configured: str | None) -> str:
    """``OPHTHAI_USER_NAME``, else the operating-system user, else ``clinician``."""
    if configured and configured.strip():
        return configured.strip()
    try:
        return getpass.getuser() or "clinician"
    except (OSError, KeyError, ImportError):  # no user entry (containers); no pwd (Windows)
        return "clinician"


@dataclass
class GuiContext:
    """Shared by the controllers of one window."""

    application: Application
    bridge: EventBridge
    #: Short calls (database, image decoding): what the clinician is waiting for.
    tasks: TaskRunner
    actor: Actor
    #: Work that can take seconds to minutes (model download and checks, waiting for a
    #: running analysis, starting the server), kept apart so it never holds up the
    #: short calls. (The watch folder has a thread of its own: see
    #: controllers/watch_folder.py.)
    slow_tasks: TaskRunner

    @property
    def watcher(self) -> Any | None:
        """The core's watch-folder service, where this version of the core has one."""
        return getattr(self.application, "watcher", None)
