"""Files a watch folder must survive: empty, mislabelled, truncated, bombs, links out of
the folder, FIFOs, odd names. The content decides; nothing hangs; every refusal leaves
its reason beside the file and tells the clinician."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from ophthai_desktop.bootstrap import Application
from ophthai_desktop.core.services.ingest import REASON_SUFFIX
from tests.support.images import jpeg_bytes, png_bytes
from tests.support.watch_folder import EventLog, build_watch_app, noise_png, wait_until


def bomb_png() -> bytes:
    """A 1-bit 20000x20000 PNG: a few KB on disk, 400 million pixels decoded."""
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Application]:
    application = build_watch_app(tmp_path)
    yield application
    application.close()


def test_hostile_and_odd_files(app: Application, tmp_path: Path) -> None:
    folder = app.settings.resolved_watch_folder
    folder.mkdir(parents=True)
    outside = tmp_path / "secret.png"
    outside.write_bytes(png_bytes((8, 8), (255, 0, 0)))
    png, jpeg = noise_png((64, 64), seed=3), jpeg_bytes((64, 48))
    bomb = bomb_png()
    assert len(bomb) < 100_000
    files: dict[str, bytes] = {
        "empty.png": b"",
        "text.jpg": b"this is not a JPEG at all\n" * 10,
        "truncated.png": png[: len(png) // 2],
        "truncated.jpeg": jpeg[: len(jpeg) // 2],
        "bomb.png": bomb,
        "Ünïcödé scan 1.PNG": png_bytes((20, 20), (1, 2, 3)),
        "UPPER_OS.JPG": jpeg,
        "jpeg inside.png": jpeg_bytes((30, 30)),
    }
    # (outcome, a piece of the reason)
    expected: dict[str, tuple[str, str]] = {
        "empty.png": ("failed", "empty"),
        "text.jpg": ("failed", "not an image"),
        "truncated.png": ("failed", "damaged or incomplete"),
        "truncated.jpeg": ("failed", "damaged or incomplete"),
        "bomb.png": ("failed", "pixels"),
        "Ünïcödé scan 1.PNG": ("ingested", ""),
        "UPPER_OS.JPG": ("ingested", ""),
        "jpeg inside.png": ("ingested", ""),
        "link.png": ("failed", "symbolic link"),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "link.png").symlink_to(outside)
    if sys.platform.startswith("linux"):
        os.mkfifo(folder / "pipe.png")  # opening it to read would block forever
        expected["pipe.png"] = ("failed", "a named pipe, a socket or a device")
    (folder / "readme.txt").write_text("not ours")  # a disallowed extension: left alone

    log = EventLog(app.bus)
    app.watcher.start()
    done = log.wait_finished(*expected)

    for name, (outcome, reason) in expected.items():
        result = done[name]
        assert result.outcome == outcome, f"{name}: {result.outcome} ({result.reason})"
        assert reason in (result.reason or ""), f"{name}: {result.reason}"
        where = "processed" if outcome == "ingested" else "failed"
        assert os.path.lexists(folder / where / name), name
        assert not os.path.lexists(folder / name), name
        if outcome == "failed":
            text = (folder / "failed" / (name + REASON_SUFFIX)).read_text(encoding="utf-8")
            assert reason in text
    # The link was moved as a link; what it pointed at was neither read nor touched.
    assert (folder / "failed" / "link.png").is_symlink()
    link_reason = (folder / "failed" / f"link.png{REASON_SUFFIX}").read_text(encoding="utf-8")
    # How to retry adds to the reason (which says not to copy a link), not repeats it:
    # how to copy what the link points to, and that the link can go.
    assert "cp -L copies what a link points to" in link_reason
    assert "The link here can be deleted" in link_reason
    assert "fix it" not in link_reason
    if sys.platform.startswith("linux"):
        pipe_reason = (folder / "failed" / f"pipe.png{REASON_SUFFIX}").read_text(encoding="utf-8")
        assert "write the image itself as a file" in pipe_reason
        assert "fix it" not in pipe_reason  # not the generic advice for a damaged image
    assert outside.read_bytes() == png_bytes((8, 8), (255, 0, 0))
    assert (folder / "readme.txt").read_text() == "not ours"

    ingested = {n: done[n] for n, (o, _r) in expected.items() if o == "ingested"}
    assert app.patients.list_patients().total == len(ingested)
    unicode_scan = app.patients.list_scans(ingested["Ünïcödé scan 1.PNG"].patient_id or "")[0]
    assert unicode_scan.original_filename == "Ünïcödé scan 1.PNG"
    upper_scan = app.patients.list_scans(ingested["UPPER_OS.JPG"].patient_id or "")[0]
    assert (upper_scan.media_type, upper_scan.laterality) == ("image/jpeg", "OS")
    mislabelled = app.patients.list_scans(ingested["jpeg inside.png"].patient_id or "")[0]
    assert mislabelled.media_type == "image/jpeg"  # the content decides, not the name

    refused = [n for n in app.notifications.list_notifications(limit=500).items if n.type == "info"]
    failed = [n for n, (o, _r) in expected.items() if o == "failed"]
    assert sum("was not taken in" in n.message for n in refused) == len(failed)
    assert wait_until(app.watcher.is_idle)


def test_a_file_over_the_size_limit_is_refused_without_being_read(tmp_path: Path) -> None:
    app = build_watch_app(tmp_path, max_image_bytes=2048)
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    try:
        app.watcher.start()
        (folder / "big.png").write_bytes(noise_png((64, 64), seed=9))
        (folder / "just over.png").write_bytes(noise_png((64, 64), seed=9)[:2049])
        done = log.wait_finished("big.png", "just over.png")
    finally:
        app.close()
    result = done["big.png"]
    assert result.outcome == "failed"
    assert result.reason == "the image is 12.4 KB; the limit is 2.0 KB (OPHTHAI_MAX_IMAGE_BYTES)"
    assert result.sha256 is None  # refused on its size alone
    # Not "2.0 KB; the limit is 2.0 KB": a size that rounds to the limit is over it.
    assert done["just over.png"].reason == (
        "the image is over the limit of 2.0 KB (OPHTHAI_MAX_IMAGE_BYTES)"
    )
    assert (folder / "failed" / "big.png").is_file()
    # The file is not to be fixed: the one who reads the reason is told which setting
    # takes such files in (it said "fix it (or export it from the device again)").
    reason = (folder / "failed" / f"big.png{REASON_SUFFIX}").read_text(encoding="utf-8")
    assert "OPHTHAI_MAX_IMAGE_BYTES" in reason and "restart" in reason
    assert "fix it" not in reason
    # The reason names the setting; how to retry does not name it again.
    assert reason.count("OPHTHAI_MAX_IMAGE_BYTES") == 1


def test_reason_files_say_how_to_retry_what_is_not_to_be_fixed(tmp_path: Path) -> None:
    """An image over the pixel limit names the setting that takes it in; a file with no
    patient id (demo mode off) is to be renamed. Both said "fix it (or export it from
    the device again)", which cannot be done to a good scan."""
    app = build_watch_app(tmp_path, watch_demo_mode=False, max_image_pixels=50 * 50)
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    try:
        app.watcher.start()
        (folder / "pt-000000000001_wide.png").write_bytes(png_bytes((60, 60), (5, 5, 5)))
        (folder / "unnamed.png").write_bytes(png_bytes((10, 10), (6, 6, 6)))
        done = log.wait_finished("pt-000000000001_wide.png", "unnamed.png")
    finally:
        app.close()
    assert {result.outcome for result in done.values()} == {"failed"}
    wide = (folder / "failed" / f"pt-000000000001_wide.png{REASON_SUFFIX}").read_text("utf-8")
    assert "the limit is 2,500 pixels" in wide
    assert "OPHTHAI_MAX_IMAGE_PIXELS" in wide and "restart" in wide and "fix it" not in wide
    assert wide.count("OPHTHAI_MAX_IMAGE_PIXELS") == 1  # in the reason, not again
    unnamed = (folder / "failed" / f"unnamed.png{REASON_SUFFIX}").read_text("utf-8")
    assert "no patient id in the file name" in unnamed
    assert "rename it to start with a patient's id" in unnamed and "fix it" not in unnamed
    assert unnamed.count("demo mode") == 1  # said in the reason, not again in the retry


def test_a_file_for_a_patient_not_on_record_says_to_add_the_patient(tmp_path: Path) -> None:
    """Without demo mode, a file whose name starts with an id no patient has: the file is
    fine, the reason file says to add the patient (or rename the file), not to fix it."""
    app = build_watch_app(tmp_path, watch_demo_mode=False)
    log = EventLog(app.bus)
    folder = app.settings.resolved_watch_folder
    name = "MRN99999_OS.png"
    try:
        app.watcher.start()
        (folder / name).write_bytes(png_bytes((10, 10), (7, 7, 7)))
        assert log.wait_finished(name)[name].outcome == "failed"
    finally:
        app.close()
    reason = (folder / "failed" / f"{name}{REASON_SUFFIX}").read_text(encoding="utf-8")
    assert "no patient has the id MRN99999" in reason
    assert "add the patient with this id" in reason and "fix it" not in reason


def test_a_folder_copied_in_is_left_as_it_is(app: Application) -> None:
    """Only files directly in the watch folder are taken in (README): a folder copied in,
    as a device exporting a study exports one, is not looked into, nor refused, nor
    moved; nothing is told about it, and the files around it are taken in."""
    folder = app.settings.resolved_watch_folder
    folder.mkdir(parents=True)
    log = EventLog(app.bus)
    app.watcher.start()
    study = folder / "study 2026-05-09"
    study.mkdir()
    (study / "scan_OD.png").write_bytes(png_bytes((10, 10), (4, 5, 6)))
    (folder / "volume.png").mkdir()  # a folder named as an image
    (folder / "beside.png").write_bytes(png_bytes((10, 10), (6, 5, 4)))
    assert log.wait_finished("beside.png")["beside.png"].outcome == "ingested"
    # A few rescans (every 0.5 s here) find nothing to take in either.
    assert not wait_until(lambda: len(log.finished()) > 1, timeout_s=1.5)
    assert sorted(p.name for p in study.iterdir()) == ["scan_OD.png"]
    assert (folder / "volume.png").is_dir()
    assert list((folder / "failed").iterdir()) == []
    notes = app.notifications.list_notifications(limit=5).items
    assert len(notes) == 1 and "New scan" in notes[0].message


#: Names whose characters act on the text they are shown in: a terminal's colour, line
#: breaks and a tab, a right-to-left override (``gnp.exe`` shown as ``exe.png``).
CONTROL_NAMES = {
    "red \x1b[31mscan.png": "red \\x1b[31mscan.png",
    "two\nlines\r\tscan.png": "two\\nlines\\r\\tscan.png",
    "scan\u202egnp.exe.png": "scan\\u202egnp.exe.png",
}


def test_a_names_control_characters_are_shown_escaped_and_the_file_keeps_its_name(
    app: Application, caplog: pytest.LogCaptureFixture
) -> None:
    """A file name's escape sequences, line breaks and bidirectional overrides reached
    the notifications and the ingest events (the status bar's text) raw: a name could
    colour a terminal, forge a second line, or turn its own text around."""
    folder = app.settings.resolved_watch_folder
    folder.mkdir(parents=True)
    for name in CONTROL_NAMES:
        (folder / name).write_bytes(b"not an image\n")  # refused
    taken = png_bytes((20, 20), (9, 8, 7))
    (folder / "first scan.png").write_bytes(taken)
    log = EventLog(app.bus)
    app.watcher.start()
    done = log.wait_finished("first scan.png", *CONTROL_NAMES.values())
    (folder / "again\x1b]0;title\x07.png").write_bytes(taken)  # a duplicate
    done = log.wait_finished("again\\x1b]0;title\\x07.png")
    assert done["again\\x1b]0;title\\x07.png"].outcome == "duplicate"

    for name, shown in CONTROL_NAMES.items():
        assert done[shown].outcome == "failed"
        assert done[shown].moved_to == f"failed/{shown}"
        assert (folder / "failed" / name).exists()  # filed under its own name
        assert (folder / "failed" / (name + REASON_SUFFIX)).exists()
    messages = [n.message for n in app.notifications.list_notifications(limit=500).items]
    for shown in [*CONTROL_NAMES.values(), "again\\x1b]0;title\\x07.png"]:
        assert any(message.startswith(f"{shown} from the watch folder") for message in messages)
    for text in [*messages, caplog.text]:
        assert not any(c in text for c in "\x1b\r\t\x07\u202e"), text
    assert not any("\n" in message for message in messages)
