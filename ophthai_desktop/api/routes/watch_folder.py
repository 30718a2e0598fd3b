"""The watch folder: its state, and pausing and resuming it at run time.

Pause and resume are :meth:`FolderWatcher.pause` and :meth:`FolderWatcher.resume`, the
calls the window's Pause/Resume make, so the window (status bar, menu and tray) follows
a client's change through the ``watcher_state`` event, as clients follow the window's;
and a client's is kept in the settings file as the window's is, so that the next start
is paused (or not) as the last one made says.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Body, Depends, Request
from starlette.concurrency import run_in_threadpool

from ophthai_desktop.api import schemas as s
from ophthai_desktop.api.deps import ActorDep, ApplicationDep
from ophthai_desktop.api.errors import COMMON_ERRORS, documented
from ophthai_desktop.api.routing import SlashRouter
from ophthai_desktop.api.security import require_token
from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.errors import Conflict, StorageError
from ophthai_desktop.core.watcher import WatcherState

log = logging.getLogger(__name__)

router = SlashRouter(
    prefix="/api", dependencies=[Depends(require_token)], responses=documented(*COMMON_ERRORS)
)

#: How long a pause or resume may take before the answer says the folder does not
#: answer (as the window's status bar says after as long).
ANSWER_WITHIN_S = 5.0

TURNED_OFF = (
    "the watch folder is turned off: turn it on in the window (Tools → Settings, "
    "Watch folder), or set OPHTHAI_WATCH_FOLDER_ENABLED=true and start ophthai serve again"
)


class WatcherCalls:
    """Pause and resume asked by clients, each on a daemon thread of its own, one at a
    time: on a share that does not answer (SMB or NFS hung) a call on the watcher can
    wait in a file-system call (resume tries a failed start again), or behind one, for
    minutes or for good. The route waits :data:`ANSWER_WITHIN_S` and answers 503 after
    that; the call goes on by itself, and while it has not returned a further one is a
    503 at once rather than another thread waiting behind it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: str | None = None  # what the call not returned yet does

    async def call(self, what: str, operation: Callable[[], None], asked_by: str) -> None:
        """Run ``operation`` (``what`` names it: "pause", "resume"; ``asked_by`` the
        client) and wait for it at most :data:`ANSWER_WITHIN_S` (server loop). The log
        says it once it is done, in time or after the 503."""
        loop = asyncio.get_running_loop()
        returned: asyncio.Future[BaseException | None] = loop.create_future()

        def settle(error: BaseException | None) -> None:
            if not returned.done():
                returned.set_result(error)

        def run() -> None:  # the control thread
            error: BaseException | None = None
            try:
                operation()
                log.info("watch folder: %s asked by an API client (%s)", what, asked_by)
            except Exception as exc:
                error = exc
            finally:
                with self._lock:
                    self._running = None
            # A closed loop (the server stopped meanwhile): nobody waits any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, error)

        with self._lock:
            if self._running is not None:
                raise StorageError(
                    f"the watch folder has not answered an earlier {self._running} yet (a "
                    "network share that is not reachable?); try again once it has"
                )
            try:
                threading.Thread(target=run, name="watch-folder-control", daemon=True).start()
            except RuntimeError as exc:  # the system has no thread to give (at its limit)
                raise StorageError(
                    f"the {what} could not be started: the system has no thread to spare "
                    f"({exc}); nothing changed, try again shortly"
                ) from exc
            self._running = what
        try:
            error = await asyncio.wait_for(asyncio.shield(returned), ANSWER_WITHIN_S)
        except TimeoutError:
            raise StorageError(
                f"the watch folder did not answer within {ANSWER_WITHIN_S:g} s (a network "
                f"share that is not reachable?); the {what} is done once it answers"
            ) from None
        if error is not None:
            raise error


def get_watcher_calls(request: Request) -> WatcherCalls:
    calls: WatcherCalls = request.app.state.watcher_calls
    return calls


WatcherCallsDep = Annotated[WatcherCalls, Depends(get_watcher_calls)]


def watch_folder_state(app: Application) -> dict[str, Any]:
    """The watch folder's state as the API answers it (any thread but the server
    loop's: the watcher's bookkeeping lock is taken)."""
    settings = app.settings
    status = app.watcher.status
    # Paused after failing to start, nothing looks at the folder: files wait there
    # uncounted, so no count is given rather than 0.
    watched = app.watcher.watching and status.state in (WatcherState.RUNNING, WatcherState.PAUSED)
    return {
        "enabled": settings.watch_folder_enabled,
        "state": status.state.value,
        "message": status.message,
        "folder": str(status.folder),
        "polling": status.polling,
        "usePolling": status.use_polling,
        "pollSeconds": settings.watch_poll_seconds,
        "extensions": list(settings.watch_extensions),
        "waiting": status.pending if watched else None,
        "inProgress": status.in_progress if watched else None,
        "ignored": status.ignored if watched else None,
        "ignoredNames": list(status.ignored_names) if watched else None,
    }


@router.get("/watch-folder", tags=["watch folder"], response_model=s.WatchFolderPublic)
def get_watch_folder(app: ApplicationDep) -> dict[str, Any]:
    """The watch folder's state (the ``watcher_state`` event's ``state``, ``message``,
    ``folder``, ``polling``) and set-up, for a client that connects after the last
    event."""
    return watch_folder_state(app)


def _check_can_change(app: Application) -> None:
    """409 while the settings turn the watch folder off, or it is not started."""
    if not app.settings.watch_folder_enabled:
        raise Conflict(TURNED_OFF)
    if app.watcher.state is WatcherState.STOPPED:
        raise Conflict(
            "the watch folder is not started (it is starting, or being set up again after "
            "a change of its settings); try again shortly"
        )


def _kept(app: Application, *, paused: bool) -> Callable[[], None]:
    """The watcher's pause (or resume), then the application keeps it as the window's
    is (:attr:`Application.keep_watch_folder_paused`), so that the next start follows
    the last one made, whoever made it. Runs on the control thread."""

    def pause_or_resume() -> None:
        if paused:
            app.watcher.pause()
        else:
            app.watcher.resume()
        if app.keep_watch_folder_paused is not None:
            app.keep_watch_folder_paused(paused)

    return pause_or_resume


@router.post(
    "/watch-folder/pause",
    tags=["watch folder"],
    response_model=s.WatchFolderPublic,
    responses=documented(400, 409, 413),
)
async def pause_watch_folder(
    app: ApplicationDep,
    calls: WatcherCallsDep,
    actor: ActorDep,
    _body: Annotated[s.NoFields | None, Body(alias="body")] = None,
) -> dict[str, Any]:
    """Stop taking files in, as the window's Pause does: files arriving wait in the
    folder (``waiting`` counts them); a watch folder in error stops trying again until
    resumed. Pausing a paused folder changes nothing."""
    _check_can_change(app)
    await calls.call("pause", _kept(app, paused=True), actor.who)
    return await run_in_threadpool(watch_folder_state, app)


@router.post(
    "/watch-folder/resume",
    tags=["watch folder"],
    response_model=s.WatchFolderPublic,
    responses=documented(400, 409, 413),
)
async def resume_watch_folder(
    app: ApplicationDep,
    calls: WatcherCallsDep,
    actor: ActorDep,
    _body: Annotated[s.NoFields | None, Body(alias="body")] = None,
) -> dict[str, Any]:
    """Take files in again, starting with those that arrived while paused, as the
    window's Resume does (a folder that had failed is tried again at once). Resuming a
    running folder changes nothing."""
    _check_can_change(app)
    await calls.call("resume", _kept(app, paused=False), actor.who)
    return await run_in_threadpool(watch_folder_state, app)
