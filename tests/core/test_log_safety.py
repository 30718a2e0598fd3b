"""What the log says of an exception nothing caught: its kind and where it was raised,
never its text, which can quote a file (and patient) name or a typed value."""

from __future__ import annotations

import ast
import errno
import subprocess
import sys
from pathlib import Path

from ophthai_desktop.core.log_safety import (
    MAX_GROUP_DEPTH,
    MAX_GROUPED,
    patient_ref,
    safe_description,
)
from ophthai_desktop.core.services.patients import new_patient_id

REPO = Path(__file__).resolve().parents[2]

#: Logging set up as ``ophthai serve`` and the window set it up, then an exception left
#: uncaught in a thread, one that Python cannot raise (in ``__del__``) and one in the
#: main thread (a Qt slot's goes to ``sys.excepthook`` too).
UNCAUGHT = """
import errno, sys, threading
from ophthai_desktop.__main__ import _configure_logging
_configure_logging(sys.argv[1])

def watch():
    raise FileNotFoundError(errno.ENOENT, "gone", "/scans/Zorblax Quimby OD.png")

thread = threading.Thread(target=watch)
thread.start()
thread.join()

class Card:
    def __del__(self):
        raise ValueError("history: Zorblax Quimby, glaucoma")

Card()
raise KeyError("Zorblax Quimby")
"""


def run_uncaught(level: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", UNCAUGHT, level],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_uncaught_exception_is_logged_by_kind_and_place_never_its_text() -> None:
    for level in ("INFO", "DEBUG"):
        done = run_uncaught(level)

        assert done.returncode == 1
        assert "Zorblax" not in done.stderr + done.stdout
        assert "glaucoma" not in done.stderr
        lines = done.stderr.splitlines()
        assert any("FileNotFoundError [ENOENT" in line and "in watch" in line for line in lines)
        assert any("ValueError at" in line and "in __del__" in line for line in lines)
        assert any("KeyError at <string>" in line for line in lines)


def _raise(exc: BaseException) -> None:
    raise exc


def _raised(exc: BaseException) -> BaseException:
    """``exc`` raised (in :func:`_raise`) and caught: it has a place, as a task's has."""
    try:
        _raise(exc)
    except BaseException as caught:
        return caught
    raise AssertionError("not raised")


def _group_of_failures() -> BaseException:
    """A group as a task group raises it: each inner exception raised where it was."""
    nested = ExceptionGroup("nested Zorblax", [_raised(KeyError("Zorblax Quimby"))])
    inner = [
        _raised(ValueError("history: Zorblax Quimby, glaucoma")),
        _raised(FileNotFoundError(errno.ENOENT, "gone", "/scans/Zorblax Quimby OD.png")),
        _raised(nested),
    ]
    return _raised(BaseExceptionGroup("Zorblax Quimby's tasks failed", inner))


def test_an_exception_group_itemizes_each_inner_exception_by_kind_and_place() -> None:
    description = safe_description(_group_of_failures())

    assert "Zorblax" not in description and "glaucoma" not in description
    assert description.startswith("ExceptionGroup at test_log_safety.py:")
    place = f"test_log_safety.py:{_raise.__code__.co_firstlineno + 1} in _raise"
    assert "[3 inner: ValueError at test_log_safety.py:" in description
    assert "FileNotFoundError [ENOENT: No such file or directory] at test_log_safety.py:" in (
        description
    )
    assert description.count(place) == 5  # the group's, each inner one's, the nested one's
    assert "ExceptionGroup at test_log_safety.py:" in description.partition("[")[2]
    caller = f"test_log_safety.py:{_raised.__code__.co_firstlineno + 3} in _raised"
    assert description.endswith(f"[1 inner: KeyError at {place} (from {caller})]]")


def test_a_large_or_deep_exception_group_is_itemized_up_to_a_cap() -> None:
    wide = ExceptionGroup("Zorblax", [ValueError(f"Zorblax {i}") for i in range(MAX_GROUPED + 5)])
    deep: BaseExceptionGroup[BaseException] = ExceptionGroup("Zorblax", [KeyError("Zorblax")])
    for _ in range(MAX_GROUP_DEPTH + 2):
        deep = ExceptionGroup("Zorblax", [deep])

    described = safe_description(wide)
    assert described.count("ValueError") == MAX_GROUPED
    assert described.endswith("; and 5 more]")
    assert described.startswith(f"ExceptionGroup [{MAX_GROUPED + 5} inner: ")
    nested = safe_description(deep)
    assert nested.count("ExceptionGroup") == MAX_GROUP_DEPTH + 1
    assert nested.endswith("[1 inner: and 1 more]" + "]" * MAX_GROUP_DEPTH)
    assert "KeyError" not in nested and "Zorblax" not in described + nested


#: Logging set up as the app sets it up, then a task whose exception nobody retrieves
#: and a future whose done-callback fails: asyncio and concurrent.futures log each with
#: its traceback, asyncio's second line quoting the exception's text too.
LIBRARIES = """
import asyncio, gc, sys
from concurrent.futures import Future
from ophthai_desktop.__main__ import _configure_logging
_configure_logging("INFO")

async def boom():
    raise ValueError("history: Zorblax Quimby, glaucoma")

async def main():
    task = asyncio.get_running_loop().create_task(boom())
    await asyncio.sleep(0.01)
    del task
    gc.collect()

asyncio.run(main())

def callback(_future):
    raise KeyError("Zorblax Quimby")

future = Future()
future.add_done_callback(callback)
future.set_result(None)
"""


def test_libraries_logging_an_exception_log_it_by_kind_and_place_never_its_text() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LIBRARIES], cwd=REPO, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert "Zorblax" not in done.stderr and "glaucoma" not in done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert any(
        "ERROR   asyncio: Task exception was never retrieved: ValueError at <string>:" in line
        and line.endswith(" in boom")
        for line in lines
    ), lines
    assert any(
        "ERROR   concurrent.futures: exception calling callback for" in line
        and "KeyError at <string>:" in line
        and "in callback" in line
        for line in lines
    ), lines


#: The app's own ``log.exception`` (the worker, the model's load, the API server), as the
#: window and ``ophthai serve`` set logging up: an SQL error quotes the row it could not
#: write, a patient's name with it.
OWN_LOG = """
import logging, sys
from ophthai_desktop.__main__ import _configure_logging
_configure_logging("INFO")
log = logging.getLogger("ophthai_desktop.core.worker")

def store():
    raise RuntimeError("INSERT INTO patients (name) VALUES ('Zorblax Quimby')")

try:
    store()
except RuntimeError:
    log.exception("the job %s failed unexpectedly", 7)
log.warning("a line of our own\\nand its second line")
"""


def test_the_apps_own_logged_exceptions_give_kind_and_place_never_their_text() -> None:
    done = subprocess.run(
        [sys.executable, "-c", OWN_LOG], cwd=REPO, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert "Zorblax" not in done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert any(
        "ERROR   ophthai_desktop.core.worker: the job 7 failed unexpectedly: RuntimeError at"
        in line
        and " in store" in line
        for line in lines
    ), lines
    assert "and its second line" in done.stderr  # a record without an exception as it was


#: An image checked as an upload or a watch-folder file is, with the log at DEBUG: a
#: TIFF whose tags, and a JPEG whose EXIF, name the patient (devices write the name into
#: ImageDescription and Artist).
IMAGE_METADATA = """
import io, sys
from PIL import Image
from PIL.TiffImagePlugin import ImageFileDirectory_v2
from ophthai_desktop.__main__ import _configure_logging
from ophthai_desktop.core.imaging import inspect_image
_configure_logging("DEBUG")

tags = ImageFileDirectory_v2()
tags[270] = "OCT OD Zorblax Quimby 1961-03-07"
tags[315] = "Zorblax Quimby"
tiff = io.BytesIO()
Image.new("L", (64, 64)).save(tiff, "TIFF", tiffinfo=tags)
exif = Image.Exif()
exif[270] = "Zorblax Quimby"
jpeg = io.BytesIO()
Image.new("RGB", (64, 64)).save(jpeg, "JPEG", exif=exif.tobytes())
print("saved", file=sys.stderr)  # Pillow's lines above this one are the test's own
for data in (tiff.getvalue(), jpeg.getvalue()):
    inspect_image(data, max_bytes=10**7, max_pixels=10**7)
"""


def test_an_images_metadata_never_reaches_the_log_even_at_debug() -> None:
    done = subprocess.run(
        [sys.executable, "-c", IMAGE_METADATA],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    read = done.stderr.split("saved\n", 1)[1]
    assert "Zorblax" not in read
    assert "1961-03-07" not in read


def test_a_patient_is_named_in_the_log_by_an_id_the_app_made_or_a_digest() -> None:
    made = new_patient_id()
    assert patient_ref(made) == made  # random: it says nothing outside the database
    given = patient_ref("MRN-0042137")
    assert given.startswith("id#") and "0042137" not in given
    assert patient_ref("MRN-0042137") == given  # one patient's lines can be matched
    assert patient_ref("MRN-0042138") != given
    assert patient_ref(f"{made}-x").startswith("id#")  # only the whole id is the app's
    assert patient_ref(None) == "none"


def test_the_digest_cannot_be_matched_across_processes() -> None:
    """Keyed anew in each process: a list of digests of guessed record numbers made
    elsewhere does not match the log."""
    code = "from ophthai_desktop.core.log_safety import patient_ref; print(patient_ref('MRN-1'))"
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 2 and patient_ref("MRN-1") + "\n" not in runs


def test_every_log_line_that_names_a_patient_names_them_by_patient_ref() -> None:
    """The app's own logging calls: an argument about a patient is ``patient_ref(...)``,
    and no message is built before the call (an f-string, ``%`` or ``format`` would put
    a value into it where this test cannot see it)."""
    package = REPO / "ophthai_desktop"
    levels = {"debug", "info", "warning", "error", "exception", "critical", "log"}
    bare = []
    for path in package.rglob("*.py"):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in levels
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in {"log", "logger", "logging"}
            ):
                continue
            message, *args = node.args[1:] if node.func.attr == "log" else node.args
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if isinstance(message, ast.JoinedStr | ast.BinOp | ast.Call):
                bare.append(f"{where}: message built before the call")
            for arg in args:
                text = ast.unparse(arg)
                if ("patient" in text or text == "pid") and not text.startswith("patient_ref("):
                    bare.append(f"{where}: {text}")
    assert not bare
