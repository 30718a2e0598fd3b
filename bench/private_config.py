"""A configuration folder of the benchmark's own, so that it never touches the user's.

The window and ``ophthai serve`` read the user's settings file (``settings.env`` in
``$XDG_CONFIG_HOME/OphthAI`` on Linux), which can turn on a watch folder that holds the
clinic's scans, and the window saves its layout (geometry, docks, splitters, hidden
columns) beside it. A benchmark's throwaway app must neither take those scans into a
database deleted a minute later nor overwrite the clinician's layout, and its figures
must not depend on either. The benchmarks that start the app call
:func:`use_private_config` first: it and every process it starts then use a temporary
folder, removed when the benchmark exits.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path


def use_private_config() -> Path:
    """Point ``XDG_CONFIG_HOME`` (read by platformdirs, Qt and child processes alike)
    at a new temporary folder; call it before the app's settings or window exist."""
    folder = Path(tempfile.mkdtemp(prefix="ophthai-bench-config-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["XDG_CONFIG_HOME"] = str(folder)
    return folder
