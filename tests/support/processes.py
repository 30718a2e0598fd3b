"""A program started for a test, its output in files, never left running."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def spawned(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stderr_path: Path,
    stdout_path: Path | None = None,
) -> Iterator[subprocess.Popen[str]]:
    """``command`` running, its stderr written to ``stderr_path`` (its stdout to
    ``stdout_path``, else dropped), to be read as it runs; killed at the end if the test
    left it running."""
    with stderr_path.open("w") as stderr:
        if stdout_path is None:
            process = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr, text=True
            )
        else:
            with stdout_path.open("w") as stdout:
                process = subprocess.Popen(
                    command, cwd=cwd, env=env, stdout=stdout, stderr=stderr, text=True
                )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
