"""Composition root: builds every core service once from :class:`Settings`.

The desktop window, ``ophthai serve`` and the tests all start here, so the services a
browser client talks to are the very ones the window uses.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from ophthai_desktop.core.errors import StorageError
from ophthai_desktop.core.events import DatabaseAvailabilityChanged, EventBus
from ophthai_desktop.core.imaging import allow_pillow_pixels
from ophthai_desktop.core.inference import InferenceEngine
from ophthai_desktop.core.log_safety import safe_description
from ophthai_desktop.core.services import (
    AuditService,
    NotificationService,
    OculomicsService,
    PatientService,
)
from ophthai_desktop.core.services.ingest import IngestService
from ophthai_desktop.core.services.jobs import JobService
from ophthai_desktop.core.services.patients import ImageLimits
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.core.storage import Database, ImageStore
from ophthai_desktop.core.storage.private import (
    create_private_folder,
    make_default_folder_private,
)
from ophthai_desktop.core.watcher import FolderWatcher, WatcherState, not_answering_message
from ophthai_desktop.core.worker import InferenceWorker

log = logging.getLogger(__name__)

#: The interpreter's thread switch interval in the running app (Python's default: 5 ms).
#: A thread that gives the interpreter lock up, for a database call or a file read, waits
#: up to this long to get it back from a thread running Python, such as the inference
#: worker between tokens. Every SQLite call gives it up, so a watch-folder scan's
#: transaction (dozens of calls) took 29-33 ms beside a busy worker at 5 ms, 18-19 ms at
#: 1 ms (bench/watch_ingest.py --busy-python), and the window's thread waits as long.
SWITCH_INTERVAL_S = 0.001


#: The soft limit on open files the running app asks for (never above the hard limit).
#: macOS starts an app at 256, and the API's connections, the database, the image store,
#: the watch folder's files and the model's shards all need descriptors; the API server
#: admits at most half of the limit as connections.
OPEN_FILES_WANTED = 4096

#: How long the watch folder's first start may take in ``ophthai serve`` before it is
#: said not to answer (as the window's status bar says after as long).
WATCHER_ANSWER_WITHIN_S = 5.0


def tune_interpreter() -> None:
    """Process settings of the running app (the desktop app and ``serve``): the switch
    interval (:data:`SWITCH_INTERVAL_S`) and the open-files limit
    (:func:`raise_open_files_limit`)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    raise_open_files_limit()


def raise_open_files_limit(wanted: int = OPEN_FILES_WANTED) -> int:
    """Raise the soft limit on open files to ``wanted`` (at most the hard limit; never
    lowered); the limit now. Where there is no such limit (Windows), 0."""
    if sys.platform == "win32":
        return 0
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError) as exc:  # some sandboxes refuse: harmless
            log.debug("could not raise the open-files limit: %s", exc)
    return int(soft)


@dataclass
class Application:
    """The running application's services, framework-free."""

    settings: Settings
    bus: EventBus
    db: Database
    images: ImageStore
    patients: PatientService
    notifications: NotificationService
    oculomics: OculomicsService
    audit: AuditService
    jobs: JobService
    engine: InferenceEngine
    worker: InferenceWorker
    ingest: IngestService
    watcher: FolderWatcher
    #: Keeps a Pause or Resume an API client made of the watch folder (True: paused) in
    #: the settings file, as the window's are, so that the next start follows it: the
    #: window's session passes it to its settings controller, ``ophthai serve`` writes it
    #: (:class:`PauseKeeper`); None keeps nothing. Called on the client's control thread
    #: once the watcher paused or resumed (never for a pause the watcher made itself);
    #: returns at once.
    keep_watch_folder_paused: Callable[[bool], None] | None = None

    def start_worker(self) -> None:
        """Run the inference worker on a plain thread (headless mode), loading the model
        first when ``load_model_on_startup`` is set."""
        if self.settings.load_model_on_startup:
            self.worker.request_load()
        self.worker.start()

    def start_watcher(self) -> bool:
        """Start the watch folder when ``watch_folder_enabled`` is set (paused when
        ``watch_folder_paused`` is); returns whether
        it was started (a folder that cannot be watched is the watcher's error state,
        tried again by itself)."""
        if not self.settings.watch_folder_enabled:
            return False
        self.watcher.start(paused=self.settings.watch_folder_paused)
        return True

    def start_watcher_in_background(
        self, answer_within_s: float = WATCHER_ANSWER_WITHIN_S
    ) -> threading.Thread | None:
        """Start the watch folder (when ``watch_folder_enabled`` is set) on a daemon
        thread of its own, as ``ophthai serve`` does: on a share that does not answer
        (SMB or NFS hung) the start waits in a file-system call for minutes or for good,
        and nothing else may wait behind it. A start that has not returned after
        ``answer_within_s`` is said in the log and as a ``watcher_state`` event (state
        ``error``); once it returns, the watcher's own state follows.

        Returns:
            The thread (alive while the start waits), or None when the watch folder is
            off.
        """
        if not self.settings.watch_folder_enabled:
            return None
        folder = self.settings.resolved_watch_folder
        log.info("watch folder: starting (%s)", folder)

        def start() -> None:
            try:
                status = self.watcher.start(paused=self.settings.watch_folder_paused)
            except Exception as exc:  # a bug: said in the log, serving goes on
                log.error("watch folder: could not start: %s", safe_description(exc))
                return
            if status.state is not WatcherState.ERROR:  # the watcher logs its errors itself
                log.info("watch folder %s: %s", status.state, status.message or status.folder)

        def not_answering() -> None:
            message = not_answering_message(folder, answer_within_s)
            if starting.is_alive() and self.watcher.say_start_not_answering(message):
                log.error("watch folder: %s", message)

        starting = threading.Thread(target=start, name="watch-folder-control", daemon=True)
        timer = threading.Timer(answer_within_s, not_answering)
        timer.name = "watch-folder-answer"
        timer.daemon = True
        starting.start()
        timer.start()
        return starting

    def close(self, *, stop_watcher: bool = True) -> bool:
        """Stop the watcher and the worker (if running) and release the database
        connections. False when a thread is still running: the worker's (see
        :meth:`InferenceWorker.wait_stopped`), or a watch-folder read that a share holds
        (see :meth:`FolderWatcher.stop`); leave with :func:`exit_now`, since the
        interpreter's exit would wait for them.

        Args:
            stop_watcher: False where a call on the watcher still waits on a share that
                does not answer (the window's): stopping it would wait behind that call,
                which stops the watcher itself once it returns.
        """
        watcher_stopped = self.watcher.stop() if stop_watcher else False
        stopped = self.worker.stop()
        self.db.close()
        return stopped and watcher_stopped


def exit_now(status: int, waiting_for: str = "the inference worker") -> NoReturn:
    """End the process without the interpreter's teardown, once everything else is
    closed, because a thread is still running: the inference worker's (inside a model
    load, which cannot be interrupted), or a watch-folder read on a share that hangs.
    Tearing the interpreter down under the first can abort the process (a running
    QThread always does); the second would hold the exit for as long as the share
    hangs. A watch-folder file whose read was cut short is left as a crash leaves it,
    which the next start repairs."""
    log.info("exiting without waiting for %s", waiting_for)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def build_application(
    settings: Settings | None = None, *, migrate: bool = True, hold: bool = True
) -> Application:
    """Create the data folder, take the database for this process (``hold``: one
    OphthAI per database; see :meth:`Database.hold`), upgrade it and wire the
    services."""
    settings = settings or Settings()
    create_private_folder(settings.data_dir)
    if "data_dir" not in settings.model_fields_set:  # the default, not one chosen
        make_default_folder_private(settings.data_dir)
    db = Database(settings.resolved_database_url, echo=False)
    if hold:
        try:
            db.hold(settings.data_dir)
        except StorageError:
            db.close()
            raise
    if migrate:
        db.upgrade()
    log.info("database ready: %s", db.describe())
    bus = EventBus()
    db.availability.subscribe(lambda available: bus.publish(DatabaseAvailabilityChanged(available)))
    images = ImageStore(settings.images_dir)
    limits = ImageLimits(max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    allow_pillow_pixels(settings.max_image_pixels)  # the worker's decoding too
    jobs = JobService(db, bus, images, limits)
    engine = InferenceEngine(settings, events=bus)
    patients = PatientService(db, bus, images, limits)
    ingest = IngestService(db, bus, patients, images, limits, demo_mode=settings.watch_demo_mode)
    notifications = NotificationService(db, bus)
    return Application(
        settings=settings,
        bus=bus,
        db=db,
        images=images,
        patients=patients,
        notifications=notifications,
        oculomics=OculomicsService(db, bus),
        audit=AuditService(db),
        jobs=jobs,
        engine=engine,
        worker=InferenceWorker(engine, jobs, bus),
        ingest=ingest,
        watcher=FolderWatcher(settings, ingest, bus, notifications=notifications),
    )
