"""A start that cannot make its folders, or finds another OphthAI on its data folder: the
window and ``ophthai serve`` stop with status 1 and a message saying what and where, no
traceback, and nothing of the user's touched."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.desktop import instance_lock
from tests.conftest import make_settings
from tests.e2e.test_e2e_serve import clean_env, free_port, start
from tests.support.privileges import without_root_privilege
from tests.support.processes import spawned
from tests.support.watch_folder import wait_until

pytestmark = pytest.mark.e2e

HOW = ["window", "serve"]

#: The app, with making a folder whose path ends with ``argv[1]`` failing with the
#: error ``argv[2]`` (ENOSPC: a disk that is full; EROFS: a read-only one).
FAILING_MKDIR = textwrap.dedent(
    """
    import errno, os, sys
    ending, code = sys.argv[1], getattr(errno, sys.argv[2])
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):
        if os.fspath(path).endswith(ending):
            raise OSError(code, os.strerror(code), os.fspath(path))
        return real_mkdir(path, *args, **kwargs)

    os.mkdir = mkdir
    from ophthai_desktop.__main__ import main
    sys.exit(main(sys.argv[3:]))
    """
)

#: The app, on a disk that is full for what it writes: no file can grow past 0 bytes
#: (EFBIG where the full disk says ENOSPC; both fail the write).
FULL_DISK = textwrap.dedent(
    """
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a failed write, not a killed process
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    from ophthai_desktop.__main__ import main
    sys.exit(main(sys.argv[1:]))
    """
)


def run_app(
    tmp_path: Path,
    data: Path,
    how: str,
    before: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Start the window (offscreen, unless ``env`` says otherwise) or ``serve`` on
    ``data``; it is expected to stop."""
    command = before or [sys.executable, "-m", "ophthai_desktop"]
    command = [*command, "--data-dir", str(data)]
    if how == "serve":
        command += ["serve", "--port", str(free_port())]
    if env is None:
        env = clean_env() | {"QT_QPA_PLATFORM": "offscreen", "OPHTHAI_API_ENABLED": "false"}
    return subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


def assert_refused(done: subprocess.CompletedProcess[str], said: str) -> None:
    assert done.returncode == 1, done.stderr
    assert said in done.stderr
    assert "Traceback" not in done.stderr
    assert "uncaught exception" not in done.stderr


@pytest.mark.parametrize("how", HOW)
def test_a_data_folder_under_a_file_names_the_file_and_leaves_it(tmp_path: Path, how: str) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("the user's")
    data = blocker / "data"

    done = run_app(tmp_path, data, how)

    assert_refused(
        done,
        f"cannot create the data folder {data}: {blocker} is a file, not a folder. "
        "Move it aside, or choose another folder.",
    )
    assert blocker.read_text() == "the user's"


@pytest.mark.parametrize("how", HOW)
def test_a_data_folder_that_is_a_file_is_refused_and_kept(tmp_path: Path, how: str) -> None:
    data = tmp_path / "data"
    data.write_text("the user's")

    done = run_app(tmp_path, data, how)

    assert_refused(done, f"cannot create the data folder {data}: {data} is a file, not a folder")
    assert data.read_text() == "the user's"


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links need a privilege")
@pytest.mark.parametrize("how", HOW)
def test_a_data_folder_linked_to_a_disk_not_connected_is_refused_and_the_link_kept(
    tmp_path: Path, how: str
) -> None:
    target = tmp_path / "usb-disk" / "ophthai"
    data = tmp_path / "data"
    data.symlink_to(target)

    done = run_app(tmp_path, data, how)

    assert_refused(
        done,
        f"cannot create the data folder {data}: {data} is a link to {target}, which does "
        "not exist (a disk not connected?)",
    )
    assert data.is_symlink() and os.readlink(data) == str(target)
    assert not target.parent.exists()  # nothing made where the disk would be


@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize(
    ("ending", "code", "said"),
    [
        ("data", "ENOSPC", "cannot create the data folder {data}: the disk that holds "
         "{parent} is full. Free space on it, then start OphthAI again."),
        ("data", "EROFS", "cannot create the data folder {data}: {parent} is on a "
         "read-only disk."),
        ("images", "ENOSPC", "cannot create the image store {data}/images: the disk that "
         "holds {data} is full. Free space on it, then start OphthAI again."),
    ],
    ids=["data-full", "data-read-only", "images-full"],
)  # fmt: skip
def test_a_folder_the_disk_cannot_hold_says_why_and_the_next_start_works(
    tmp_path: Path, how: str, ending: str, code: str, said: str
) -> None:
    data = tmp_path / "clinic" / "data"
    data.parent.mkdir()

    done = run_app(tmp_path, data, how, before=[sys.executable, "-c", FAILING_MKDIR, ending, code])

    assert_refused(done, said.format(data=data, parent=data.parent))
    # Space freed: what the failed start left behind does not stand in the way.
    application = build_application(make_settings(data.parent))
    application.close()
    assert (data / "images").is_dir()


@pytest.mark.skipif(sys.platform == "win32", reason="permission bits do not stop Windows' ACLs")
@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("where", ["parent", "data folder"])
def test_a_data_folder_this_account_may_not_write_in_is_named(
    tmp_path: Path, how: str, where: str
) -> None:
    parent = tmp_path / "shared"
    data = parent / "data"
    locked = parent if where == "parent" else data
    locked.mkdir(parents=True)
    kept = locked / "kept.txt"
    kept.write_text("the user's")
    locked.chmod(0o555)
    prefix = [*without_root_privilege(), sys.executable, "-m", "ophthai_desktop"]
    try:
        done = run_app(tmp_path, data, how, before=prefix)
    finally:
        locked.chmod(0o755)

    if where == "parent":
        said = f"cannot create the data folder {data}: this account may not write in {parent}."
    else:
        said = f"the data folder {data} cannot be written by this account."
    assert_refused(done, said)
    assert kept.read_text() == "the user's"


@pytest.mark.skipif(sys.platform == "win32", reason="permission bits do not stop Windows' ACLs")
@pytest.mark.parametrize("in_the_way", ["file", "not writable"])
def test_serve_names_a_watch_folder_it_cannot_create_and_why(
    tmp_path: Path, in_the_way: str
) -> None:
    """Not refused (the watch folder is tried again by itself while the API serves), but
    the error says which folder and why, not a bare "File exists"."""
    data = tmp_path / "data"
    env = clean_env() | {"OPHTHAI_WATCH_FOLDER_ENABLED": "true"}
    before: list[str] = []
    if in_the_way == "file":
        folder = data / "incoming_scans"  # the default, which the app makes
        data.mkdir()
        folder.write_text("the user's")
        said = (
            f"cannot create the watch folder {folder}: {folder} is a file, not a folder. "
            "Move it aside, or choose another folder; retrying in"
        )
    else:
        folder = tmp_path / "scans"  # a configured one, there but locked
        folder.mkdir(mode=0o555)
        env["OPHTHAI_WATCH_FOLDER_PATH"] = str(folder)
        before = without_root_privilege()
        said = (
            f"cannot create the watch folder's processed/ folder {folder / 'processed'}: "
            f"this account may not write in {folder}. Choose a folder it may write in, or "
            "have it given the right; retrying in"
        )
    args = ["--data-dir", str(data), "serve", "--port", str(free_port())]
    serving = start(tmp_path, args, env, before)
    try:
        assert wait_until(lambda: said in serving.output()), serving.output()
    finally:
        serving.stop()
        folder.chmod(0o755)
    assert folder.is_dir() or folder.read_text() == "the user's"


def test_a_second_serve_on_a_data_folder_is_refused(tmp_path: Path) -> None:
    """It would take the first one's running analysis for one a crash left, and run it
    again."""
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "serve", "--port", str(free_port())]
    first = start(tmp_path, args, clean_env())
    try:
        done = run_app(tmp_path, data, "serve")
    finally:
        first.stop()

    assert_refused(
        done, f"OphthAI already runs on the data folder {data} (process {first.process.pid})"
    )
    assert "listening on" not in done.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="a file size limit is POSIX's")
@pytest.mark.parametrize("how", HOW)
def test_a_lock_a_killed_serve_left_on_a_full_disk_is_not_said_to_be_a_running_app(
    tmp_path: Path, how: str
) -> None:
    """Found by the chaos run of issue #4: killed with its data folder's disk full, the
    next start could not write the lock file anew and said OphthAI already runs, naming
    the process that had ended (the window asked it to show itself, then said the
    same). It says the lock cannot be replaced, and why; once there is room the next
    start takes the lock over."""
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "serve", "--port", str(free_port())]
    killed = start(tmp_path, args, clean_env())
    killed.process.kill()
    killed.stop()

    done = run_app(tmp_path, data, how, before=[sys.executable, "-c", FULL_DISK])

    assert_refused(
        done,
        f"the data folder's lock file {data / 'ophthai-desktop.lock'} was left by OphthAI "
        f"process {killed.process.pid}, which has ended",
    )
    assert "already" not in done.stderr
    again = start(tmp_path, args, clean_env())  # space freed
    again.stop()


def _lock_left_by(data: Path, pid: int, boot_id: bytes) -> None:
    """Write the data folder's lock as an OphthAI of process ``pid`` (a Python program
    of this machine) left it, the machine's boot being ``boot_id``."""
    from PySide6.QtCore import QSysInfo

    instance_lock(data)  # the folder, made as the app makes it
    program = Path(os.path.realpath(sys.executable)).name
    lines = [
        str(pid).encode(),
        program.encode(),
        QSysInfo.machineHostName().encode(),
        bytes(QSysInfo.machineUniqueId().data()),
        boot_id,
    ]
    (data / "ophthai-desktop.lock").write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.skipif(not Path("/proc/self/exe").exists(), reason="Linux's /proc")
@pytest.mark.parametrize("how", HOW)
@pytest.mark.parametrize("since", ["another program has its process id", "a restart"])
def test_a_lock_whose_process_id_was_given_again_on_a_full_disk_is_not_said_to_be_a_running_app(
    tmp_path: Path, how: str, since: str
) -> None:
    """A lock left by a crash names a process id that the system gave since to another
    program, or, after a restart, to anything (a Python program, here this test): Qt
    takes that lock for stale, as it is, but on a full disk cannot replace it, and the
    start said OphthAI already runs (process N), the window after waiting for it."""
    from PySide6.QtCore import QSysInfo

    data = tmp_path / "data"
    other = subprocess.Popen(["sleep", "60"])
    try:
        if since == "a restart":
            holder = os.getpid()
            _lock_left_by(data, holder, b"a-boot-before-this-one")
        else:
            holder = other.pid
            _lock_left_by(data, holder, bytes(QSysInfo.bootUniqueId().data()))

        done = run_app(tmp_path, data, how, before=[sys.executable, "-c", FULL_DISK])

        assert_refused(
            done,
            f"the data folder's lock file {data / 'ophthai-desktop.lock'} was left by "
            f"OphthAI process {holder}, which has ended",
        )
        assert "already" not in done.stderr
        # Stale indeed: with room, the next start takes it over.
        again = start(
            tmp_path, ["--data-dir", str(data), "serve", "--port", str(free_port())], clean_env()
        )
        again.stop()
    finally:
        other.kill()
        other.wait()


def test_serve_on_the_data_folder_of_a_window_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    held = instance_lock(data)
    assert held.tryLock(0)  # this process stands in for the running window
    try:
        done = run_app(tmp_path, data, "serve")
    finally:
        held.unlock()

    assert_refused(done, f"OphthAI already runs on the data folder {data} (process {os.getpid()})")
    assert "listening on" not in done.stdout


def test_a_window_on_the_data_folder_of_serve_is_refused_at_once(tmp_path: Path) -> None:
    """``serve`` has no window to show and does not close by itself: the window said so
    only after asking it to show itself for 30 s."""
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "serve", "--port", str(free_port())]
    serving = start(tmp_path, args, clean_env())
    try:
        began = time.monotonic()
        done = run_app(tmp_path, data, "window")
        took = time.monotonic() - began
    finally:
        serving.stop()

    assert_refused(
        done,
        f"ophthai serve (process {serving.process.pid}) runs on this data folder, {data}: "
        "stop it first",
    )
    assert took < 20  # not the 30 s wait for a window to answer or close


@pytest.mark.parametrize("command", ["serve", "download-model"])
def test_a_setting_with_a_value_it_cannot_take_is_named_without_a_traceback(
    tmp_path: Path, command: str
) -> None:
    """A typo in the environment or a settings file (a port that is not a number, a
    switch that is neither true nor false): the setting named, status 2, as for a
    missing token."""
    data = tmp_path / "data"
    env = clean_env() | {"OPHTHAI_API_PORT": "80oo", "WATCH_FOLDER_ENABLED": "maybe"}
    (tmp_path / ".env").write_text("DEBUG=perhaps\n")

    done = subprocess.run(
        [sys.executable, "-m", "ophthai_desktop", command, "--data-dir", str(data)]
        if command == "serve"
        else [sys.executable, "-m", "ophthai_desktop", command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 2, done.stderr
    said = done.stderr.splitlines()
    assert any(
        line.startswith(f"ophthai {command}: OPHTHAI_API_PORT: Input should be a valid integer")
        for line in said
    )
    assert any(  # the seed's name, as the user set it
        line.startswith(f"ophthai {command}: WATCH_FOLDER_ENABLED: ")
        and line.endswith("(set in the environment)")
        for line in said
    )
    assert any(  # a seed name in .env, named as written there
        line.startswith(f"ophthai {command}: DEBUG: ") and ".env" in line for line in said
    )
    assert "Traceback" not in done.stderr
    assert "80oo" not in done.stderr  # values are not repeated (a token, a password)
    assert not data.exists()  # nothing made


@pytest.mark.skipif(sys.platform != "linux", reason="the user's settings file under XDG")
def test_the_window_names_a_setting_it_cannot_take_and_where_without_a_traceback(
    tmp_path: Path,
) -> None:
    """Started from a desktop icon nobody reads stderr: the window's path says it in its
    refusal (a message box on a screen; offscreen, the log), naming each setting as the
    user wrote it and the file or environment that set it, and exits non-zero."""
    data, config = tmp_path / "data", tmp_path / "config"
    users = config / "OphthAI" / "settings.env"
    users.parent.mkdir(parents=True)
    users.write_text("OPHTHAI_API_PORT=80oo\n")
    (tmp_path / ".env").write_text("OPHTHAI_THEME=blue\n")
    env = clean_env() | {
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_CONFIG_HOME": str(config),
        "WATCH_FOLDER_ENABLED": "maybe",
    }

    done = run_app(tmp_path, data, "window", env=env)

    assert done.returncode == 2, done.stderr
    assert "the application could not start: these settings have a value they cannot take" in (
        done.stderr
    )
    said = done.stderr.splitlines()
    assert (
        f"• OPHTHAI_API_PORT: Input should be a valid integer, unable to parse string as an "
        f"integer (set in {users})" in said
    )
    assert "• WATCH_FOLDER_ENABLED: Input should be a valid boolean, unable to interpret " in (
        done.stderr
    )
    assert (
        f"• OPHTHAI_THEME: Input should be 'light' or 'dark' (set in {tmp_path / '.env'})" in said
    )
    assert "Traceback" not in done.stderr
    for value in ("80oo", "maybe", "blue"):
        assert value not in done.stderr
    assert not data.exists()  # nothing made


@pytest.mark.skipif(sys.platform != "linux", reason="X11 / Wayland: Linux's displays")
def test_the_window_without_a_display_says_so_instead_of_aborting(tmp_path: Path) -> None:
    """Started over SSH or from a service (no DISPLAY, no WAYLAND_DISPLAY, no
    QT_QPA_PLATFORM), Qt aborted the process (SIGABRT) telling the user to reinstall:
    the window now says there is no display and names `ophthai serve`, status 1."""
    data = tmp_path / "data"
    env = {
        k: v
        for k, v in clean_env().items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
    }

    done = run_app(tmp_path, data, "window", env=env)

    assert_refused(done, "there is no display to open the window on")
    assert "ophthai serve" in done.stderr
    assert "Reinstalling the application" not in done.stderr


HANGING_LOAD = textwrap.dedent(
    """
    import sys, time
    from ophthai_desktop.core.inference import engine

    def hanging_load(self, install):
        print("MODEL LOAD STARTED", file=sys.stderr, flush=True)
        time.sleep(600)

    engine.InferenceEngine._load = hanging_load
    from ophthai_desktop.__main__ import main
    sys.exit(main(sys.argv[1:]))
    """
)


def test_serve_stopped_during_the_models_load_leaves_no_lock_nor_process_id_behind(
    tmp_path: Path, tiny_checkpoint: Path
) -> None:
    """Stopped while its model loads, serve ends without waiting for the load (exit_now),
    which skipped its release of the data folder: its lock file and ``ophthai-serve.pid``
    stayed, naming an ended process, for the next start to judge stale."""
    data = tmp_path / "data"
    env = clean_env() | {
        "OPHTHAI_MODEL_PATH": str(tiny_checkpoint),
        "OPHTHAI_DEVICE": "cpu",
        "OPHTHAI_LOAD_MODEL_ON_STARTUP": "true",
    }
    stderr_path = tmp_path / "stderr.log"
    command = [sys.executable, "-c", HANGING_LOAD, "--data-dir", str(data), "serve"]
    with spawned(
        [*command, "--port", "0"], cwd=tmp_path, env=env, stderr_path=stderr_path
    ) as process:
        assert wait_until(lambda: "MODEL LOAD STARTED" in stderr_path.read_text(), timeout_s=60)
        assert (data / "ophthai-serve.pid").read_text() == str(process.pid)
        process.terminate()
        status = process.wait(30)
    output = stderr_path.read_text()
    assert status == 0, output
    assert "exiting without waiting for the inference worker" in output
    assert not (data / "ophthai-serve.pid").exists()
    assert not (data / "ophthai-desktop.lock").exists()
    again = start(tmp_path, ["--data-dir", str(data), "serve", "--port", "0"], clean_env())
    again.stop()
