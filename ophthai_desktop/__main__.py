"""Command line: ``ophthai`` (the desktop app), ``ophthai serve`` (headless) and
``ophthai download-model``."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ophthai_desktop import __version__

if TYPE_CHECKING:
    from ophthai_desktop.core.settings import Settings

log = logging.getLogger("ophthai_desktop")

#: How long ``ophthai serve`` waits at exit for a client's Pause or Resume to be written
#: to the settings file (a home folder on a share that does not answer).
PAUSE_WRITTEN_WITHIN_S = 5.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ophthai",
        description="OphthAI Desktop: ophthalmology clinical workstation. Without a command "
        "it opens the desktop window, with the inference worker and (unless "
        "OPHTHAI_API_ENABLED=false) the embedded API.",
    )
    parser.add_argument("--version", action="version", version=f"ophthai {__version__}")
    parser.add_argument("--data-dir", type=Path, help="data folder (overrides OPHTHAI_DATA_DIR)")
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser(
        "serve",
        help="run the API, the inference worker and the watch folder (when enabled) headless",
    )
    serve.add_argument(
        "--host", help="address to listen on (default: OPHTHAI_API_HOST, else 127.0.0.1)"
    )
    serve.add_argument(
        "--port",
        type=int,
        help="port to listen on (default: OPHTHAI_API_PORT, else 8000; 0 = any free)",
    )
    # Also accepted after the command (`ophthai serve --data-dir D`), as people write it.
    serve.add_argument(
        "--data-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="data folder (overrides OPHTHAI_DATA_DIR)",
    )
    commands.add_parser(
        "download-model",
        help="download the model (OPHTHAI_MODEL_ID into the Hugging Face cache, or into "
        "OPHTHAI_MODEL_PATH) from the Hugging Face Hub, as the window's model manager does",
        description="Download the model from the Hugging Face Hub where the app looks for "
        "it: OPHTHAI_MODEL_ID at OPHTHAI_MODEL_REVISION into the Hugging Face cache "
        "(HF_HOME or HF_HUB_CACHE where set), or into the folder OPHTHAI_MODEL_PATH names. "
        "About 15 GB; progress on stderr. Ctrl-C stops it (status 130): run it again to go "
        "on where it stopped. Without a network it says so and exits with status 1: copy "
        "the model folder to this computer and set OPHTHAI_MODEL_PATH instead. A running "
        "`ophthai serve` finds the model within seconds.",
    )
    return parser


def _configure_logging(level: str) -> None:
    from ophthai_desktop.core.log_safety import configure_logging

    configure_logging(level)


def listening_line(url: str) -> str:
    """What ``ophthai serve`` prints once it listens at ``url``: URLs a person can open.
    Listening on every interface, the address others use first (as the window's status
    bar shows it), then this computer's; scripts read the first URL."""
    from ophthai_desktop.core.addresses import listens_everywhere, local_url, shown_url

    if not listens_everywhere(url):
        return f"OphthAI API listening on {url} (docs: {url}/docs)"
    here = local_url(url)
    return (
        f"OphthAI API listening on {shown_url(url)} on every network interface "
        f"(on this computer: {here}, docs: {here}/docs)"
    )


#: The option of the command line that gives each setting it overrides.
OPTION_NAMES = {"api_host": "--host", "api_port": "--port", "data_dir": "--data-dir"}


def _read_settings(command: str, **overrides: object) -> Settings | None:
    """The settings, or None once stderr has said which ones have a value they cannot
    take, as the user named them (the option typed, or the variable set) and where
    (rather than a traceback)."""
    from ophthai_desktop.core.settings import SettingsRefused, read_settings

    try:
        return read_settings(OPTION_NAMES, **overrides)
    except SettingsRefused as exc:
        for problem in exc.problems:
            print(f"ophthai {command}: {problem}", file=sys.stderr)
        print(
            f"ophthai {command}: .env.example lists each setting with what it takes",
            file=sys.stderr,
        )
        return None


def serve(host: str | None, port: int | None, data_dir: Path | None) -> int:
    """Run the API headless until SIGINT or SIGTERM; returns the exit status."""
    from ophthai_desktop.core.errors import OphthaiError
    from ophthai_desktop.core.settings import check_api_binding

    overrides: dict[str, object] = {}
    if host is not None:
        overrides["api_host"] = host
    if port is not None:
        overrides["api_port"] = port
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    settings = _read_settings("serve", **overrides)
    if settings is None:
        return 2
    _configure_logging("DEBUG" if settings.debug else settings.log_level)
    try:
        check_api_binding(settings.api_host, settings.api_token, settings.cors_origins)
    except OphthaiError as exc:
        print(f"ophthai serve: {exc.message}", file=sys.stderr)
        return 2

    from ophthai_desktop.bootstrap import exit_now
    from ophthai_desktop.data_folder import hold_data_folder, release_data_folder

    try:
        # Held until the process ends: a second serve, or a window, on this data folder
        # would run this one's running analysis again (see data_folder).
        lock = hold_data_folder(settings.data_dir)
    except OphthaiError as exc:
        print(f"ophthai serve: {exc.message}", file=sys.stderr)
        return 1
    try:
        status, still_running = _serve(settings)
    finally:
        release_data_folder(settings.data_dir, lock)
    if still_running:
        # After the release: exit_now skips every finally, and the lock file and the
        # process id left behind would name an ended process to the next start.
        exit_now(status, still_running)
    return status


def _serve(settings: Settings) -> tuple[int, str]:
    """:func:`serve` once the data folder is held: build, listen, run until a signal.
    Returns the exit status and what still runs ("" when nothing does; otherwise the
    caller leaves with :func:`exit_now` once the data folder is released)."""
    from ophthai_desktop.api.app import create_app
    from ophthai_desktop.api.server import ApiServer, ServerStartError
    from ophthai_desktop.bootstrap import build_application, tune_interpreter
    from ophthai_desktop.core.errors import OphthaiError
    from ophthai_desktop.core.settings import USER_SETTINGS_FILE
    from ophthai_desktop.core.settings_file import PauseKeeper

    try:
        application = build_application(settings)
    except OphthaiError as exc:
        print(f"ophthai serve: {exc.message}", file=sys.stderr)
        return 1, ""
    # A client's Pause or Resume of the watch folder lasts across restarts, as the
    # window's does (settings.env).
    pause_keeper = PauseKeeper(USER_SETTINGS_FILE)
    application.keep_watch_folder_paused = pause_keeper.keep
    server = ApiServer(create_app(application), settings.api_host, settings.api_port)
    # Everything built so far lives as long as the process: keep it out of the garbage
    # collector's full passes, which otherwise stall every thread for tens of ms.
    gc.collect()
    gc.freeze()
    tune_interpreter()
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        server.start()
    except ServerStartError as exc:
        print(f"ophthai serve: {exc}", file=sys.stderr)
        application.close()
        return 1, ""
    application.start_worker()
    # On a thread of its own: a watch folder on a share that hangs must not keep the
    # API from being announced nor SIGINT/SIGTERM from being acted on.
    watcher_start = application.start_watcher_in_background()
    # One line on stdout that scripts (and the end-to-end test) can wait for.
    print(listening_line(server.url), flush=True)
    status = 0
    try:
        while not stop.wait(0.5):
            if not server.running:
                log.error("the API server stopped by itself")
                status = 1
                break
    finally:
        server.stop()
        answered = watcher_start is None or not watcher_start.is_alive()
        if not answered:
            log.warning("closing without waiting for the watch folder: it does not answer")
        # A watcher whose start still waits is not stopped: that would wait behind it.
        stopped = application.close(stop_watcher=answered)
        if not pause_keeper.wait_written(PAUSE_WRITTEN_WITHIN_S):
            log.warning("closing without waiting for the settings file: it does not answer")
    if not stopped:
        return status, "the inference worker or the watch folder (see above)"
    log.info("stopped cleanly")
    return status, ""


def download_the_model() -> int:
    """Download the configured model where the app looks for it, saying how far it got on
    stderr; returns the exit status. For a computer where no window runs (`ophthai
    serve`): a running server finds the model within seconds."""
    from ophthai_desktop.core.errors import OphthaiError
    from ophthai_desktop.core.inference import InferenceEngine
    from ophthai_desktop.core.inference.download import DownloadCancelled

    settings = _read_settings("download-model")
    if settings is None:
        return 2
    _configure_logging("DEBUG" if settings.debug else settings.log_level)
    engine = InferenceEngine(settings)
    said = threading.Lock()
    percent_said = -1

    def on_progress(fraction: float, message: str) -> None:
        """huggingface_hub's download threads: one line per percent."""
        nonlocal percent_said
        with said:
            if int(fraction * 100) != percent_said:
                percent_said = int(fraction * 100)
                print(message, file=sys.stderr, flush=True)

    cancel = threading.Event()

    def on_ctrl_c(_signum: int, _frame: object) -> None:
        """Stop the download threads at their next piece. Left to a KeyboardInterrupt,
        huggingface_hub stopped only the files not yet started: those on their way (a
        7B model's shards, gigabytes) were fetched to their end first. A second Ctrl-C
        interrupts as usual."""
        cancel.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        print("ophthai download-model: stopping...", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        engine.download(progress=on_progress, cancel=cancel)
    except (DownloadCancelled, KeyboardInterrupt):
        print(
            "ophthai download-model: stopped; run it again to go on where it stopped",
            file=sys.stderr,
        )
        return 130
    except OphthaiError as exc:
        print(f"ophthai download-model: {exc.message}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous)
    print(engine.status().message, flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args.host, args.port, args.data_dir)
    if args.command == "download-model":
        return download_the_model()
    if args.data_dir is not None:
        os.environ["OPHTHAI_DATA_DIR"] = str(args.data_dir)
    from ophthai_desktop.desktop import run

    return run()


if __name__ == "__main__":
    sys.exit(main())
