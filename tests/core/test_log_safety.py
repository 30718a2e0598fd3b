"""What the log says of an exception nothing caught: its kind and where it was raised,
never its text, which can quote a file (and patient) name or a typed value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
