"""A private X server (Xvfb) for the tests that run the real window, and the
environment that starts ``ophthai`` on it over a temporary data folder."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def xvfb(size: str = "1600x1000x24") -> Iterator[str]:
    """Xvfb on a free display number (it picks one itself: ``-displayfd``); yields
    the ``DISPLAY`` value.

    Raises:
        RuntimeError: Xvfb did not start.
    """
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", size, "-nolisten", "tcp"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)


def app_env(display: str, data_dir: Path) -> dict[str, str]:
    """The environment for ``python -m ophthai_desktop`` on ``display``: its own data
    folder and config folder, the API on a free port, no model."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPHTHAI_")}
    env.update(
        DISPLAY=display,
        QT_QPA_PLATFORM="xcb",
        OPHTHAI_DATA_DIR=str(data_dir),
        OPHTHAI_API_PORT="0",
        OPHTHAI_MODEL_PATH=str(data_dir / "no-model"),
        OPHTHAI_LOG_LEVEL="INFO",
        # Window state (QSettings) and settings.env go here, not to the user's config.
        XDG_CONFIG_HOME=str(data_dir.parent / "config"),
    )
    return env
