"""Fixtures for the GUI tests (pytest-qt, ``QT_QPA_PLATFORM=offscreen``).

Every test gets its own data folder and a window on it. After each test every window is
closed, and the test FAILS if a QThread or a Python thread it started is still running
(in the manner of napari's ``_dangling_qthreads``): a leaked worker would keep the model
or the database busy long after the window is gone.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, QSettings, Qt, QThread, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QFont
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from ophthai_desktop.bootstrap import Application, build_application
from ophthai_desktop.core.storage import models as m
from ophthai_desktop.core.worker import InferenceWorker
from ophthai_desktop.ui.controllers import settings as settings_controller
from ophthai_desktop.ui.session import GuiSession
from ophthai_desktop.ui.theme import apply_theme
from tests.conftest import make_settings

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: How long threads get to finish after the test before they count as leaked.
THREAD_GRACE_S = 10.0

#: The application font the first test found, restored before every test.
_FIRST_FONT: list[QFont] = []


@pytest.fixture(scope="session", autouse=True)
def _garbage_collected_on_the_gui_thread() -> Iterator[None]:
    """Python's automatic garbage collection off for the window's tests; each test
    collects on this (the GUI) thread before it starts (:func:`_no_leaked_threads`).

    The app itself collects on the GUI thread while its window runs (ui/gc_collector),
    and turns automatic collection back on when the window is shut. Here windows come
    and go hundreds of times in one process: a closed test's window, in a reference
    cycle, was otherwise destroyed by whichever thread next crossed the collector's
    threshold (a watcher, the API's, the worker's of the next test), and Qt cannot stop
    a destroyed object's timers from another thread: the GUI thread then delivered a
    timer event to freed memory (a segmentation fault in ``QTimerInfoList::
    activateTimers``, seen in the whole suite run in one process, in
    ``test_ui_watch_folder_api.py``). Start-up's objects are frozen (``gc.freeze``) so
    that each test's full collection walks only what tests made since.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()
    gc.collect()
    if was_enabled:
        gc.enable()


#: What Qt says when an object is used or destroyed on another thread than its own.
WRONG_THREAD = (
    "cannot be stopped from another thread",
    "cannot be started from another thread",
    "Cannot create children for a parent that is in a different thread",
    "Cannot send events to objects owned by a different thread",
)


@pytest.fixture(autouse=True)
def _qt_objects_kept_to_their_threads(qtlog: Any) -> Iterator[None]:
    """Fail the test during which Qt said an object was used or destroyed on another
    thread than its own: a timer left behind so crashed the suite later, in another
    test (see :func:`_garbage_collected_on_the_gui_thread`)."""
    yield
    said = {r.message for r in qtlog.records if any(w in r.message for w in WRONG_THREAD)}
    if said:
        pytest.fail(f"Qt objects used off their thread: {'; '.join(sorted(said))}")


@pytest.fixture(autouse=True)
def _no_leaked_threads(qapp: QApplication, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every window after the test; fail on QThreads or Python threads left
    running by it."""
    before = {thread.ident for thread in threading.enumerate()}
    started: weakref.WeakSet[QThread] = weakref.WeakSet()
    original_start = QThread.start

    def tracking_start(self: QThread, *args: Any) -> None:
        started.add(self)
        original_start(self, *args)

    monkeypatch.setattr(QThread, "start", tracking_start)
    # The tests before this one: their closed windows are destroyed here, on the GUI
    # thread, before this test starts threads (see _garbage_collected_on_the_gui_thread).
    gc.collect()
    # Each test starts with the light look at the usual font, whatever the one before
    # it switched to (a dark palette left behind changed the next tests' colours).
    if not _FIRST_FONT:
        _FIRST_FONT.append(QFont(qapp.font()))
    qapp.setFont(_FIRST_FONT[0])
    apply_theme("light")
    yield
    for widget in QApplication.topLevelWidgets():
        widget.close()
    QApplication.processEvents()

    def leaked() -> list[str]:
        names = []
        for qthread in list(started):
            try:
                if qthread.isRunning():
                    names.append(f"QThread {qthread.objectName() or type(qthread).__name__}")
            except RuntimeError:  # the C++ object is gone, so is the thread
                pass
        for thread in threading.enumerate():
            if thread.ident in before or isinstance(thread, threading._DummyThread):
                continue
            if thread.is_alive():
                names.append(f"thread {thread.name}")
        return names

    deadline = time.monotonic() + THREAD_GRACE_S
    while (left := leaked()) and time.monotonic() < deadline:
        QApplication.processEvents()
        time.sleep(0.05)
    if left:
        pytest.fail(f"threads left running after the test: {', '.join(left)}")


@pytest.fixture(autouse=True)
def _own_window_state(tmp_path: Path) -> Iterator[Path]:
    """Window geometry and splitters (QSettings, INI) go to the test's folder, never to
    the user's configuration."""
    folder = tmp_path / "qsettings"
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(folder))
    yield folder


@pytest.fixture(autouse=True)
def _own_settings_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """What the window writes to the user's settings file (the dialog's OK, the watch
    folder's Pause) goes to the test's folder, never to the user's configuration."""
    path = tmp_path / "config" / "settings.env"
    monkeypatch.setattr(settings_controller, "settings_file", lambda: path)
    return path


Maker = Callable[..., GuiSession]


@pytest.fixture
def make_gui(qtbot: QtBot, tmp_path: Path) -> Iterator[Maker]:
    """Builds a started window on a fresh data folder.

    ``engine`` swaps a stand-in engine into the application (and a worker for it);
    ``application`` uses services already built; ``tray`` makes a system-tray icon
    (offscreen has no tray, so the default is none); other keywords are settings.
    """
    sessions: list[tuple[GuiSession, Application]] = []

    def make(
        *,
        engine: Any = None,
        application: Application | None = None,
        tray: bool = False,
        **overrides: Any,
    ) -> GuiSession:
        if application is None:
            overrides.setdefault("api_enabled", False)
            overrides.setdefault("model_path", tmp_path / "no-model-here")
            overrides.setdefault("user_name", "Dr. Test")
            folder = tmp_path / f"gui{len(sessions)}"
            application = build_application(make_settings(folder, **overrides))
        if engine is not None:
            application.worker.stop()
            application.engine = engine
            application.worker = InferenceWorker(engine, application.jobs, application.bus)
        session = GuiSession(application, tray=tray)
        sessions.append((session, application))
        session.start()
        session.window.show()
        qtbot.waitExposed(session.window)
        return session

    yield make
    for session, application in sessions:
        session.shutdown()
        application.close()


@pytest.fixture
def gui(make_gui: Maker) -> GuiSession:
    """A window on a fresh data folder, model not installed, API off."""
    return make_gui()


def seed_patients(application: Application, count: int, *, prefix: str = "Seeded") -> None:
    """Insert ``count`` patients quickly (one transaction), newest last."""
    statuses = ("Pending Analysis", "Stable", "Critical", "Discharged")
    start = datetime.now(UTC) - timedelta(days=1)
    with application.db.session() as session:
        for i in range(count):
            when = start + timedelta(seconds=i)
            session.add(
                m.Patient(
                    id=f"pt-seed{i:05d}",
                    name=f"{prefix} Patient {i:05d}",
                    age=20 + i % 70,
                    gender=("Female", "Male")[i % 2],
                    symptoms=[],
                    history="",
                    status=statuses[i % 4],
                    workflow_step=1,
                    admission_date=when,
                    created_at=when,
                    updated_at=when,
                )
            )


def drop_files(widget: QWidget, paths: list[Path]) -> bool:
    """Drag ``paths`` onto ``widget`` and drop them there, as a file manager would.
    Returns whether the drop was accepted."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path)) for path in paths])
    centre = widget.rect().center()
    enter = QDragEnterEvent(
        QPoint(centre),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, enter)
    if not enter.isAccepted():
        return False
    drop = QDropEvent(
        QPointF(centre),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def open_patient(qtbot: QtBot, session: GuiSession, patient_id: str) -> None:
    """Open ``patient_id`` and wait until the tabs have heard so (the page alone could
    show them earlier, from a change heard while they were read)."""
    with qtbot.waitSignal(
        session.patients.patient_opened,
        check_params_cb=lambda record: record is not None and record.id == patient_id,
        timeout=10_000,
    ):
        session.patients.open_patient(patient_id)
    assert session.patient_page.patient is not None
    assert session.patient_page.patient.id == patient_id


def nothing_more_happens(qtbot: QtBot, session: GuiSession, ms: int = 100) -> None:
    """Let the window handle what an answer or a key has set off (``ms`` of its event
    loop), then wait for the work it handed to its task pools to end: a check that
    something did not happen after it does not pass only because a loaded machine had
    not got to it yet."""
    qtbot.wait(ms)
    qtbot.waitUntil(lambda: not session.tasks.busy and not session.slow_tasks.busy)
