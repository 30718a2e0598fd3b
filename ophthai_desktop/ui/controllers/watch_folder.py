"""Starting, stopping, pausing and resuming the watch folder from the window.

The watch folder can be on a network share that does not answer (SMB or NFS hung): its
``start()`` and ``stop()`` can then wait in a file-system call for minutes, or for good.
So every such call (at start, after the settings change it, Pause/Resume, at quit) runs
on a daemon thread of its own, one at a time, never on a task pool's thread: the other
slow tasks never wait behind a dead share, and quitting does not wait for it. A call
that has not returned after :data:`NOT_ANSWERING_AFTER_S` makes the status bar say
"Watch folder: does not answer"; what is asked meanwhile is remembered, and once the
call returns the watch folder is set up as the settings then ask (one call, however
many changes were made), and the status bar shows it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from ophthai_desktop.core.log_safety import safe_description
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.core.watcher import WatcherState, not_answering_message
from ophthai_desktop.ui.context import GuiContext

log = logging.getLogger(__name__)

#: How long a start, stop, pause or resume may take before the status bar says that the
#: watch folder does not answer (and quitting stops waiting for it).
NOT_ANSWERING_AFTER_S = 5.0


@dataclass(frozen=True)
class WatchTarget:
    """How the watch folder should be: on or off, which folder, how it is watched
    (only while a share is mounted on it; polled, how often), paused or not."""

    enabled: bool
    folder: Path
    paused: bool = False
    require_mount: bool = False
    use_polling: bool = False
    poll_seconds: float = 1.0

    @classmethod
    def of(cls, settings: Settings) -> WatchTarget:
        return cls(
            settings.watch_folder_enabled,
            settings.resolved_watch_folder,
            paused=settings.watch_folder_paused,
            require_mount=settings.watch_folder_require_mount,
            use_polling=settings.watch_use_polling,
            poll_seconds=settings.watch_poll_seconds,
        )

    def needs_restart_from(self, previous: WatchTarget) -> bool:
        """Whether going from ``previous`` to this takes a stop and a start (the
        watcher reads its folder and how to watch it when it starts; a pause does
        not)."""
        return dataclasses.replace(self, paused=False) != dataclasses.replace(
            previous, paused=False
        )


class WatchFolderController(QObject):
    """Puts the watch folder in the state the settings and the Pause action ask for.

    Signals:
        applied(): a call on the watcher returned (in time or late): the status bar
            can show its state again.
        not_answering_changed(): a call started not answering, or answered at last.
    """

    applied = Signal()
    not_answering_changed = Signal()
    #: From the control thread: its call returned (the error's description, or "").
    _returned = Signal(str)

    def __init__(self, ctx: GuiContext, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._watcher = ctx.watcher
        settings = ctx.application.settings
        self._wanted = WatchTarget.of(settings)
        #: What the last call that returned set up (the watcher starts stopped).
        self._done = dataclasses.replace(self._wanted, enabled=False)
        #: Something was asked for since the running call started.
        self._dirty = False
        self._not_answering: Path | None = None
        self._not_answering_timer = QTimer(self)
        self._not_answering_timer.setSingleShot(True)
        self._not_answering_timer.timeout.connect(self._on_not_answering_timer_timeout)
        self._returned.connect(self._on_control_returned)
        # Shared with the control thread.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._target = self._done
        self._folder_asked = self._done.folder  # what the running call is waiting on
        self._closing = False

    @property
    def not_answering(self) -> Path | None:
        """The folder a call has waited on for more than :data:`NOT_ANSWERING_AFTER_S`
        (None while every call answers)."""
        return self._not_answering

    @property
    def answer_within_s(self) -> float:
        """How long a call may take before it counts as not answering."""
        return NOT_ANSWERING_AFTER_S

    @property
    def busy(self) -> bool:
        """Whether a call on the watcher has not returned yet."""
        with self._lock:
            return self._thread is not None

    # GUI thread ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the watch folder when the settings turn it on."""
        self._dirty = self._wanted != self._done
        self._next()

    def follow(self, settings: Settings) -> None:
        """The watch folder's settings changed: stop it and start it again as they say
        (paused when the last Pause, the window's or an API client's, is in them).
        Settings that set up the same watch folder (its path written another way)
        change nothing: a pause stands."""
        target = WatchTarget.of(settings)
        if not target.needs_restart_from(self._wanted):
            return
        self._wanted = target
        self._dirty = True
        self._next()

    def set_paused(self, paused: bool) -> None:
        """Pause or resume taking files in."""
        if self._watcher is None:
            return
        self._wanted = dataclasses.replace(self._wanted, paused=paused)
        self._dirty = True
        self._next()

    def stop(self) -> bool:
        """Stop the watch folder for good (the window closes), waiting at most
        :data:`NOT_ANSWERING_AFTER_S`. A call that does not return by then is left to
        its thread, which stops the watch folder when it does.

        Returns:
            Whether the watch folder stopped; False when a call on it still waits.
        """
        # At most what is left of the call's time to answer.
        timer = self._not_answering_timer
        wait_s = timer.remainingTime() / 1000 if timer.isActive() else NOT_ANSWERING_AFTER_S
        timer.stop()
        with self._lock:
            self._closing = True
            running = self._thread
        if self._watcher is None:
            return True
        if self._not_answering is not None:
            log.warning("closing without waiting for the watch folder: it does not answer")
            return False
        if running is not None:
            running.join(max(0.0, wait_s))
            if running.is_alive():
                log.warning("closing without waiting for the watch folder: it does not answer")
                return False
        # Stopped on a thread of its own all the same: the files being taken in are
        # finished first, and one may be read from a share that has just stopped
        # answering.
        stopping = self._launch(self._done, self._done, stop_only=True)
        stopping.join(NOT_ANSWERING_AFTER_S)
        if stopping.is_alive():
            log.warning("closing without waiting for the watch folder: it does not answer")
            return False
        return True

    def _next(self) -> None:
        """Start a call for what was asked, unless one is running (its end comes back
        here)."""
        if self._watcher is None or not self._dirty or self.busy or self._closing:
            return
        self._dirty = False
        target = self._wanted
        self._launch(target, self._done)
        self._not_answering_timer.start(int(NOT_ANSWERING_AFTER_S * 1000))

    def _launch(
        self, target: WatchTarget, previous: WatchTarget, *, stop_only: bool = False
    ) -> threading.Thread:
        thread = threading.Thread(
            target=self._control,
            args=(target, previous, stop_only),
            name="watch-folder-control",
            daemon=True,  # quitting never waits for a share that does not answer
        )
        with self._lock:
            self._thread = thread
            self._target = target
        thread.start()
        return thread

    @Slot()
    def _on_not_answering_timer_timeout(self) -> None:
        with self._lock:
            if self._thread is None:
                return
            folder = self._folder_asked
        self._not_answering = folder
        log.warning("the watch folder does not answer; it is set up once it does")
        if self._watcher is not None:
            # A start held by the share: API clients read it too (GET /api/watch-folder,
            # the watcher_state event), not "stopped" (nothing when no start is running).
            self._watcher.say_start_not_answering(
                not_answering_message(folder, NOT_ANSWERING_AFTER_S)
            )
        self.not_answering_changed.emit()

    @Slot(str)
    def _on_control_returned(self, error: str) -> None:
        with self._lock:
            self._thread = None
            self._done = self._target
        self._not_answering_timer.stop()
        if self._not_answering is not None:
            self._not_answering = None
            self.not_answering_changed.emit()
        if error:
            log.error("the watch folder could not be set up: %s", error)
        self.applied.emit()
        self._next()  # what was asked meanwhile

    # Control thread ------------------------------------------------------------------

    def _control(self, target: WatchTarget, previous: WatchTarget, stop_only: bool) -> None:
        """Runs on the control thread: stop the watch folder and start it again when it
        is turned on or moved, then pause or resume it."""
        watcher = self._watcher
        assert watcher is not None
        error = ""
        try:
            restart = target.needs_restart_from(previous)
            if stop_only or restart:
                self._waiting_on(previous.folder if previous.enabled else target.folder)
                watcher.stop()
            if target.enabled and not stop_only:
                self._waiting_on(target.folder)
                if restart:
                    # It starts running: no resume after it, which would undo a pause an
                    # API client made in between.
                    if target.paused:  # no file read before the pause
                        watcher.start(paused=True)
                    else:
                        watcher.start()
                else:
                    self._pause_or_resume(paused=target.paused)  # the window's Pause or Resume
        except Exception as exc:  # a bug: said in the log, the window goes on
            error = safe_description(exc)
        with self._lock:
            closing = self._closing
            if closing:
                self._thread = None
        if closing and not stop_only:
            # The window closed meanwhile: nothing is left running behind it.
            try:
                watcher.stop()
            except Exception as exc:
                log.error("the watch folder did not stop cleanly: %s", safe_description(exc))
            return
        if closing:
            return
        with contextlib.suppress(RuntimeError):  # the window's objects are gone
            self._returned.emit(error)

    def _pause_or_resume(self, *, paused: bool) -> None:
        """Control thread: pause or resume the watch folder, saying so in the log when
        that changed it (by what the watcher does, not by what this window asked last:
        an API client may have paused or resumed it since)."""
        watcher = self._watcher
        assert watcher is not None
        was_paused = watcher.state is WatcherState.PAUSED
        if paused:
            watcher.pause()
        else:
            watcher.resume()
        if (watcher.state is WatcherState.PAUSED) != was_paused:
            log.info("watch folder %s", "paused" if paused else "resumed")

    def _waiting_on(self, folder: Path) -> None:
        with self._lock:
            self._folder_asked = folder
