"""Running a command with permission bits applying to it, root's tests included."""

from __future__ import annotations

import os
import shutil

import pytest


def without_root_privilege() -> list[str]:
    """A prefix that runs a command without root's right to ignore permission bits, or
    [] where permission bits already apply (not root)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("as root, permission bits apply only with setpriv (util-linux)")
    dropped = "-dac_override,-dac_read_search"
    return ["setpriv", f"--inh-caps={dropped}", f"--bounding-set={dropped}"]
