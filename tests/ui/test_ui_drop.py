"""Dropping image files on the window (a real QDropEvent with file URLs)."""

from __future__ import annotations

import errno
import os
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDialogButtonBox, QLabel
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.errors import StorageError
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.storage.images import StoredImage, _write_failed
from ophthai_desktop.ui.controllers import imports
from ophthai_desktop.ui.session import GuiSession
from tests.support.images import jpeg_bytes, png_bytes, tiff_volume_bytes
from tests.ui.conftest import Maker, drop_files, open_patient


def _file(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


def test_dropping_images_attaches_them_and_queues_the_analysis(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path
) -> None:
    app = gui.application
    patient = app.patients.create_patient({"name": "Drop Target"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    files = [
        _file(tmp_path, "macula_OCT_OD.png", png_bytes((64, 48))),
        _file(tmp_path, "fundus_left_OS.jpg", jpeg_bytes((80, 60))),
    ]

    assert drop_files(gui.patient_page, files)  # on the page; handled by the window

    jobs = gui.jobs_panel.model
    qtbot.waitUntil(lambda: jobs.rowCount() == 2)
    assert {jobs.get(j).state for j in jobs.open_job_ids()} == {"queued"}  # type: ignore[union-attr]
    scans = app.patients.list_scans(patient.id)
    assert [(s.modality, s.laterality, s.source) for s in scans] == [
        ("fundus", "OS", "drop"),
        ("OCT", "OD", "drop"),
    ]
    assert {s.original_filename for s in scans} == {f.name for f in files}
    viewer = gui.scan_viewer
    qtbot.waitUntil(lambda: viewer.scan_count() == 2 and viewer.canvas.has_image)
    assert viewer.thumbnails.item(0).text().splitlines()[0] == "Fundus · OS"
    assert viewer.thumbnails.item(0).toolTip().startswith("Fundus · OS (left) · ")
    qtbot.waitUntil(lambda: gui.patient_page.scan_count.text() == "2")
    assert "2 images added to Drop Target; their analyses are queued." in gui.window.banner.text()
    assert gui.patient_page.tabs.currentWidget() is gui.analysis_view


def test_the_added_message_goes_by_itself_and_a_refusal_stays(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The message that images were added ("1 image(s) added to ...; the analysis is
    queued.") stayed at the top of the window until closed: still "queued" once the
    result was shown, and over other patients' pages."""
    monkeypatch.setattr(imports, "ADDED_SHOWN_MS", 300, raising=False)
    patient = gui.application.patients.create_patient({"name": "Once"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    banner = gui.window.banner

    assert drop_files(gui.window, [_file(tmp_path, "macula_OCT_OD.png", png_bytes((64, 48)))])

    qtbot.waitUntil(lambda: banner.text() == "1 image added to Once; its analysis is queued.")
    qtbot.waitUntil(lambda: banner.isHidden(), timeout=3000)
    # Files that were not imported are named until the clinician closes the message.
    notes = _file(tmp_path, "notes.png", b"not an image")
    second = _file(tmp_path, "second_OCT_OD.png", png_bytes((64, 48), (9, 9, 9)))
    assert drop_files(gui.window, [notes, second])
    added = "1 image added to Once; its analysis is queued."
    qtbot.waitUntil(lambda: added in banner.text())  # "being added" is said first
    assert "notes.png" in banner.text()
    assert "\n1 file was not imported:\n• notes.png: " in banner.text()  # not "1 file(s) were"
    qtbot.wait(600)  # twice ADDED_SHOWN_MS
    assert added in banner.text() and "notes.png" in banner.text()


def test_refused_files_are_named_with_the_reason_and_leave_nothing(
    qtbot: QtBot, make_gui: Maker, tmp_path: Path
) -> None:
    gui = make_gui(max_image_bytes=2048)
    app = gui.application
    patient = app.patients.create_patient({"name": "Careful"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    text = _file(tmp_path, "notes.png", b"these are my notes, not an image")
    big = _file(tmp_path, "huge.png", png_bytes((400, 400), (1, 2, 3)) + bytes(4096))
    broken = _file(tmp_path, "broken.png", png_bytes((64, 64))[:60])
    edge = _file(tmp_path, "edge.png", bytes(2049))  # one byte over: not "2.0; limit 2.0"
    strip = _file(tmp_path, "strip.png", png_bytes((603, 3)))  # more than the model reads
    volume = _file(tmp_path, "volume.tif", tiff_volume_bytes(pages=2, size=(10, 10)))

    assert drop_files(gui.window, [text, big, broken, edge, strip, volume])

    banner = gui.window.banner
    qtbot.waitUntil(lambda: "not imported" in banner.text())
    message = banner.text()
    assert "notes.png: The file is not an image that can be read; use PNG, JPEG" in message
    assert "huge.png: The file is 5.5 KB; the limit is 2.0 KB (OPHTHAI_MAX_IMAGE_BYTES)" in message
    assert "edge.png: The file is over the limit of 2.0 KB (OPHTHAI_MAX_IMAGE_BYTES)" in message
    assert "broken.png: The image is damaged or incomplete" in message
    assert "strip.png: The image is 603x3 pixels: its long side is more than 200 times" in message
    assert "volume.tif: The TIFF file holds 2 images (a volume of scans)" in message
    assert banner.property("kind") == "error"
    qtbot.wait(200)
    assert app.patients.list_scans(patient.id) == ()
    assert app.jobs.list_jobs().total == 0


def test_a_mixed_drop_still_names_the_refused_files_once_the_rest_are_added(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path
) -> None:
    app = gui.application
    patient = app.patients.create_patient({"name": "Mixed Drop"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    good = _file(tmp_path, "macula_OCT_OD.png", png_bytes((64, 48)))
    text = _file(tmp_path, "notes.png", b"these are my notes, not an image")

    assert drop_files(gui.window, [text, good])

    banner = gui.window.banner
    qtbot.waitUntil(lambda: "image added" in banner.text())
    message = banner.text()
    assert "1 image added to Mixed Drop; its analysis is queued." in message
    assert "notes.png: The file is not an image that can be read" in message
    assert banner.property("kind") == "warning"
    assert len(app.patients.list_scans(patient.id)) == 1


def test_a_file_gone_before_the_check_is_not_called_a_folder(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path
) -> None:
    """A dropped file moved away before it was read was refused as "not a file
    (folders are not imported)"; the folder dropped with it still is."""
    patient = gui.application.patients.create_patient({"name": "Moved"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    folder = tmp_path / "series"
    folder.mkdir()
    good = _file(tmp_path, "macula_OCT_OD.png", png_bytes((64, 48)))
    gone = tmp_path / "moved_away.png"  # the file manager moved it meanwhile

    assert drop_files(gui.window, [folder, good, gone])

    banner = gui.window.banner
    qtbot.waitUntil(lambda: "1 image added" in banner.text())
    assert "moved_away.png: the file is no longer there (moved or deleted)" in banner.text()
    assert "series: it is not a file (folders are not imported)" in banner.text()


@pytest.mark.skipif(
    sys.platform == "win32" or getattr(os, "geteuid", lambda: 0)() == 0,
    reason="permission bits do not stop Windows' ACLs or root",
)
def test_files_that_cannot_be_read_are_named_and_the_others_taken(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path
) -> None:
    """A file on a folder the user may not enter, and one the user may not read, are
    refused by name with the reason; the readable image of the same drop is added."""
    patient = gui.application.patients.create_patient({"name": "Locked"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    locked = tmp_path / "locked"
    locked.mkdir()
    behind = _file(locked, "behind_OD.png", png_bytes((64, 48)))
    unreadable = _file(tmp_path, "unreadable_OS.png", png_bytes((64, 49)))
    good = _file(tmp_path, "macula_OCT_OD.png", png_bytes((64, 50)))
    locked.chmod(0o000)
    unreadable.chmod(0o000)
    try:
        assert drop_files(gui.window, [behind, unreadable, good])

        banner = gui.window.banner
        qtbot.waitUntil(lambda: "1 image added" in banner.text())
        message = banner.text()
    finally:
        locked.chmod(0o700)
        unreadable.chmod(0o600)
    assert "behind_OD.png: The file could not be read: Permission denied" in message
    assert "unreadable_OS.png: The file could not be read: Permission denied" in message
    assert len(gui.application.patients.list_scans(patient.id)) == 1


def test_dropping_without_a_patient_offers_a_new_one(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path
) -> None:
    scan = _file(tmp_path, "OCTA_OD_0001.png", png_bytes((64, 48)))
    assert drop_files(gui.window, [scan])
    qtbot.waitUntil(lambda: gui.patients.dialog is not None)
    dialog = gui.patients.dialog
    assert dialog is not None
    assert dialog.windowTitle() == "New patient"
    assert dialog.modality.currentData() == "OCTA" and dialog.laterality.currentData() == "OD"
    qtbot.keyClicks(dialog.name, "Walk-in")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()

    page = gui.patient_page
    qtbot.waitUntil(lambda: page.patient is not None and page.name.text() == "Walk-in")
    assert page.patient is not None
    app = gui.application
    scans = app.patients.list_scans(page.patient.id)
    assert [(s.modality, s.laterality, s.source) for s in scans] == [("OCTA", "OD", "drop")]
    qtbot.waitUntil(lambda: gui.jobs_panel.model.rowCount() == 1)
    qtbot.waitUntil(lambda: gui.scan_viewer.canvas.has_image)
    # The model is not installed here: the analysis view says so (and how to fix it).
    qtbot.waitUntil(lambda: "not installed" in gui.analysis_view.notice.text())


def test_a_refused_drop_without_a_patient_creates_nobody(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path
) -> None:
    text = _file(tmp_path, "letter.txt", b"Dear colleague")
    assert drop_files(gui.window, [text])
    qtbot.waitUntil(lambda: "letter.txt" in gui.window.banner.text())
    assert gui.patients.dialog is None
    assert gui.application.patients.list_patients().total == 0


def test_a_mixed_drop_without_a_patient_cancelled_says_nothing_was_added(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path
) -> None:
    good = _file(tmp_path, "macula_OCT_OD.png", png_bytes((64, 48)))
    text = _file(tmp_path, "letter.txt", b"Dear colleague")
    assert drop_files(gui.window, [text, good])
    qtbot.waitUntil(lambda: gui.patients.dialog is not None)
    assert "being added" in gui.window.banner.text()
    gui.patients.dialog.reject()  # type: ignore[union-attr]
    qtbot.waitUntil(lambda: "not added" in gui.window.banner.text())
    assert gui.window.banner.text().startswith("1 file was not imported:\n")
    assert "\nThe other file was not added: no patient was created." in gui.window.banner.text()
    assert "letter.txt" in gui.window.banner.text()
    assert gui.application.patients.list_patients().total == 0


def test_escape_while_the_new_patient_is_saved_does_not_say_nobody_was_created(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save cannot be taken back: the dialog stays until it is done, instead of
    closing and telling the clinician that no patient was created while one was."""
    app = gui.application
    saving = threading.Event()
    create = app.patients.create_patient

    def slow_create(*args: Any, **kwargs: Any) -> Any:
        saving.wait(10)  # the database is busy for a moment
        return create(*args, **kwargs)

    monkeypatch.setattr(app.patients, "create_patient", slow_create)
    good = _file(tmp_path, "macula_OCT_OD.png", png_bytes((64, 48)))
    text = _file(tmp_path, "letter.txt", b"Dear colleague")
    assert drop_files(gui.window, [text, good])
    qtbot.waitUntil(lambda: gui.patients.dialog is not None)
    dialog = gui.patients.dialog
    assert dialog is not None
    qtbot.keyClicks(dialog.name, "Walk-in")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    dialog.close()

    assert dialog.isVisible()  # still saving
    saving.set()
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Walk-in")
    assert gui.patients.dialog is None  # closed once saved
    assert "no patient was created" not in gui.window.banner.text()
    assert app.patients.list_patients().total == 1


def test_the_same_image_twice_is_filed_once(qtbot: QtBot, gui: GuiSession, tmp_path: Path) -> None:
    """A file and a link to it in one drop, or an image the patient already has
    dropped again, was filed as one more scan with one more analysis of it."""
    app = gui.application
    patient = app.patients.create_patient({"name": "Twice"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    scan = _file(tmp_path, "macula OCT OD é.png", png_bytes((64, 48)))
    link = tmp_path / "link_OD.png"
    link.symlink_to(scan)
    banner = gui.window.banner

    assert drop_files(gui.window, [scan, link])

    qtbot.waitUntil(lambda: "1 image added to Twice" in banner.text())
    assert "• link_OD.png: The same image as macula OCT OD é.png, also in this import" in (
        banner.text()
    )
    assert len(app.patients.list_scans(patient.id)) == 1

    # The same image again, with a new one, under other names.
    again = _file(tmp_path, "again_OCT_OD.png", png_bytes((64, 48)))
    new = _file(tmp_path, "new_OCT_OD.png", png_bytes((64, 48), (7, 7, 7)))
    assert drop_files(gui.window, [again, new])

    qtbot.waitUntil(lambda: "again_OCT_OD.png" in banner.text())
    assert "• again_OCT_OD.png: The patient already has this image (as macula OCT OD é.png)" in (
        banner.text()
    )
    qtbot.waitUntil(lambda: "1 image added to Twice" in banner.text())
    names = [s.original_filename for s in app.patients.list_scans(patient.id)]
    assert names == ["new_OCT_OD.png", "macula OCT OD é.png"]
    assert app.jobs.list_jobs().total == 2


def test_the_same_image_twice_without_a_patient_makes_one_scan(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path
) -> None:
    scan = _file(tmp_path, "fundus_OS.jpg", jpeg_bytes((64, 48)))
    copy = _file(tmp_path, "fundus_OS copy.jpg", scan.read_bytes())
    assert drop_files(gui.window, [scan, copy])
    qtbot.waitUntil(lambda: gui.patients.dialog is not None)
    dialog = gui.patients.dialog
    assert dialog is not None
    assert "fundus_OS copy.jpg: The same image as fundus_OS.jpg" in gui.window.banner.text()
    qtbot.keyClicks(dialog.name, "Walk-in")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()

    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Walk-in")
    (record,) = gui.application.patients.list_patients().items
    assert len(gui.application.patients.list_scans(record.id)) == 1


def _disk_full_after(monkeypatch: pytest.MonkeyPatch, gui: GuiSession, stored: int) -> None:
    """The image store takes ``stored`` more images, then its disk is full."""
    store = gui.application.patients._images
    put = store.put
    left = [stored]

    def put_until_full(data: bytes, **kwargs: Any) -> StoredImage:
        if left[0] == 0:
            raise _write_failed(OSError(errno.ENOSPC, "No space left on device"), store.root)
        left[0] -= 1
        return put(data, **kwargs)

    monkeypatch.setattr(store, "put", put_until_full)


def test_a_disk_filling_up_mid_drop_names_the_files_not_added_not_all(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first image was stored and queued, and the window said "The images could
    not be added": dropped again, the first one was filed twice."""
    app = gui.application
    patient = app.patients.create_patient({"name": "Full Disk"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    _disk_full_after(monkeypatch, gui, 1)
    files = [
        _file(tmp_path, "first_OCT_OD.png", png_bytes((64, 48))),
        _file(tmp_path, "second_OCT_OS.png", png_bytes((64, 48), (1, 2, 3))),
        _file(tmp_path, "third_OCT_OS.png", png_bytes((64, 48), (4, 5, 6))),
    ]

    assert drop_files(gui.window, files)

    banner = gui.window.banner
    qtbot.waitUntil(lambda: "1 image added to Full Disk" in banner.text())
    assert "could not be added" not in banner.text()
    assert "2 files were not imported" in banner.text()
    for name in ("second_OCT_OS.png", "third_OCT_OS.png"):
        assert f"• {name}: The disk is full: free space on it, then try again " in banner.text()
    assert "No space left on device" in banner.text()
    scans = app.patients.list_scans(patient.id)
    assert [s.original_filename for s in scans] == ["first_OCT_OD.png"]
    qtbot.waitUntil(lambda: gui.jobs_panel.model.rowCount() == 1)


def test_a_drop_that_stores_nothing_says_no_image_was_added(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = gui.application
    patient = app.patients.create_patient({"name": "Read Only"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    _disk_full_after(monkeypatch, gui, 0)

    assert drop_files(gui.window, [_file(tmp_path, "scan_OD.png", png_bytes((64, 48)))])

    banner = gui.window.banner
    qtbot.waitUntil(lambda: banner.text().startswith("No image was added."))
    assert "• scan_OD.png: " in banner.text()
    assert "added to" not in banner.text()
    assert app.patients.list_scans(patient.id) == ()
    assert app.jobs.list_jobs().total == 0


def test_a_disk_filling_up_after_the_new_patient_is_made_does_not_offer_it_again(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patient and its first image were committed, the second image failed, and the
    dialog stayed open with the error: "Create patient" again made a second patient."""
    app = gui.application
    _disk_full_after(monkeypatch, gui, 1)
    files = [
        _file(tmp_path, "first_OCT_OD.png", png_bytes((64, 48))),
        _file(tmp_path, "second_OCT_OS.png", png_bytes((64, 48), (1, 2, 3))),
    ]
    assert drop_files(gui.window, files)
    qtbot.waitUntil(lambda: gui.patients.dialog is not None)
    dialog = gui.patients.dialog
    assert dialog is not None
    qtbot.keyClicks(dialog.name, "Walk-in")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()

    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Walk-in")
    assert gui.patients.dialog is None  # closed: the patient exists
    banner = gui.window.banner
    assert "The patient was created with 1 of the 2 images." in banner.text()
    assert "• second_OCT_OS.png: " in banner.text()
    assert app.patients.list_patients().total == 1
    (record,) = app.patients.list_patients().items
    assert [s.original_filename for s in app.patients.list_scans(record.id)] == ["first_OCT_OD.png"]


def test_dragging_something_that_is_not_a_file_is_refused(gui: GuiSession) -> None:
    from PySide6.QtCore import QMimeData, QPoint, Qt
    from PySide6.QtGui import QDragEnterEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setText("just text")
    enter = QDragEnterEvent(
        QPoint(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    QApplication.sendEvent(gui.window, enter)
    assert not enter.isAccepted()


def test_import_image_from_the_file_menu(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patient = gui.application.patients.create_patient({"name": "Menu"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    scan = _file(tmp_path, "scan_OD.png", png_bytes((50, 40)))
    monkeypatch.setattr(
        "ophthai_desktop.ui.controllers.imports.QFileDialog.getOpenFileNames",
        lambda *args: ([str(scan)], "Images"),
    )
    gui.window.import_action.trigger()
    qtbot.waitUntil(lambda: gui.scan_viewer.scan_count() == 1)
    assert gui.application.patients.list_scans(patient.id)[0].laterality == "OD"
    qtbot.waitUntil(lambda: gui.jobs_panel.model.rowCount() == 1)


def test_an_image_whose_analysis_cannot_be_queued_is_not_kept_as_a_scan(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan was committed, queuing its analysis failed (the database locked), and
    the window said the image was not added: the patient kept a scan nobody analysed,
    and dropping it again was refused as one the patient already has."""
    app = gui.application
    patient = app.patients.create_patient({"name": "Locked Queue"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    queue_in = app.jobs.queue_in
    calls = [0]

    def locked_on_the_second(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise StorageError("The database or image store is not available: locked")
        return queue_in(*args, **kwargs)

    monkeypatch.setattr(app.jobs, "queue_in", locked_on_the_second)
    files = [
        _file(tmp_path, "first_OCT_OD.png", png_bytes((64, 48))),
        _file(tmp_path, "second_OCT_OS.png", png_bytes((64, 48), (1, 2, 3))),
    ]

    assert drop_files(gui.window, files)

    banner = gui.window.banner
    qtbot.waitUntil(lambda: "1 image added to Locked Queue" in banner.text())
    assert "• second_OCT_OS.png: The database or image store is not available" in banner.text()
    scans = app.patients.list_scans(patient.id)
    assert [s.original_filename for s in scans] == ["first_OCT_OD.png"]  # as it says
    monkeypatch.undo()
    assert drop_files(gui.window, [files[1]])  # dropped again: taken, and analysed
    qtbot.waitUntil(lambda: "1 image added to Locked Queue" in banner.text())
    qtbot.waitUntil(lambda: len(app.patients.list_scans(patient.id)) == 2)
    jobs = app.jobs.list_jobs(limit=10).items
    assert sorted(job.scan_id for job in jobs) == sorted(
        s.id for s in app.patients.list_scans(patient.id)
    )


def test_a_new_patient_whose_first_analysis_cannot_be_queued_is_not_created(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patient and its first image were committed before the analysis was queued:
    when queuing failed, the dialog showed the error over a patient that existed, and
    "Create patient" again made a second one."""
    app = gui.application

    def locked(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("The database or image store is not available: locked")

    monkeypatch.setattr(app.jobs, "queue_in", locked)
    assert drop_files(gui.window, [_file(tmp_path, "walk_in_OCT_OD.png", png_bytes((64, 48)))])
    qtbot.waitUntil(lambda: gui.patients.dialog is not None)
    dialog = gui.patients.dialog
    assert dialog is not None
    qtbot.keyClicks(dialog.name, "Walk-in")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()

    qtbot.waitUntil(lambda: "not available" in dialog.error_text())
    assert app.patients.list_patients().total == 0  # nothing to be made twice
    monkeypatch.undo()
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()  # tried again
    qtbot.waitUntil(lambda: gui.patient_page.name.text() == "Walk-in")
    (record,) = app.patients.list_patients().items
    (scan,) = app.patients.list_scans(record.id)
    assert [job.scan_id for job in app.jobs.list_jobs(limit=10).items] == [scan.id]


#: A file name that would turn the text after it around (U+202E) and break its line.
_TRICKY = "scan\u202egnp.exe\n_OCT_OD.png"
_TRICKY_SHOWN = "scan\\u202egnp.exe\\n_OCT_OD.png"


def test_dropped_file_names_are_shown_escaped_and_stored_as_they_are(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path
) -> None:
    """A right-to-left override or a line break in a dropped file's name turned the
    banner's, the thumbnail's and the scan header's text around or broke its line."""
    app = gui.application
    patient = app.patients.create_patient({"name": "Tricky"}, actor=Actor("t", "gui"))
    open_patient(qtbot, gui, patient.id)
    good = _file(tmp_path, _TRICKY, png_bytes((64, 48)))
    bad = _file(tmp_path, "notes\u202etxt.png\n", b"not an image")

    assert drop_files(gui.window, [bad, good])

    banner = gui.window.banner
    qtbot.waitUntil(lambda: "1 image added to Tricky" in banner.text())
    message = banner.text()
    assert "• notes\\u202etxt.png\\n: The file is not an image" in message
    assert "\u202e" not in message
    viewer = gui.scan_viewer
    qtbot.waitUntil(lambda: viewer.scan_count() == 1 and viewer.canvas.has_image)
    tooltip = viewer.thumbnails.item(0).toolTip()
    assert tooltip.endswith(f" · {_TRICKY_SHOWN}")
    assert viewer.info.full_text().endswith(f" · {_TRICKY_SHOWN}")
    # The scan keeps the name the file had.
    assert [s.original_filename for s in app.patients.list_scans(patient.id)] == [_TRICKY]


def test_a_repeat_and_the_new_patient_offer_show_names_escaped(
    qtbot: QtBot, gui: GuiSession, tmp_path: Path
) -> None:
    first = _file(tmp_path, _TRICKY, png_bytes((64, 48)))
    copy = _file(tmp_path, "copy\x1b[31m.png", png_bytes((64, 48)))

    assert drop_files(gui.window, [first, copy])

    qtbot.waitUntil(lambda: gui.patients.dialog is not None)
    dialog = gui.patients.dialog
    assert dialog is not None
    shown = [label.text() for label in dialog.findChildren(QLabel)]
    assert _TRICKY_SHOWN in shown
    assert not any("\u202e" in text for text in shown)
    message = gui.window.banner.text()
    assert f"• copy\\x1b[31m.png: The same image as {_TRICKY_SHOWN}, also in this import" in (
        message
    )
    assert "\x1b" not in message and "\u202e" not in message
    dialog.reject()
