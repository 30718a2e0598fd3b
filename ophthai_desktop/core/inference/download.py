"""Download a model from the Hugging Face Hub: the one action that goes online.

Progress comes from huggingface_hub's progress bars, which are replaced by a silent bar
class that counts bytes, reports them, and raises :class:`DownloadCancelled` from the
download threads once the cancel event is set. Call from a worker thread, never the GUI
thread; the callback runs on huggingface_hub's download threads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ophthai_desktop.core.errors import ModelUnavailable
from ophthai_desktop.core.units import format_bytes

log = logging.getLogger(__name__)

ProgressCallback = Callable[[float, str], None]

#: Files the engine needs; the rest of a repository (other formats, docs) is skipped.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.tiktoken"]

#: How to download the model, said wherever it is missing: the window's model manager,
#: or, where no window runs (`ophthai serve` on a server), the command line.
DOWNLOAD_IN_THE_WINDOW = "AI ▸ Model manager…"
HOW_TO_DOWNLOAD = f"{DOWNLOAD_IN_THE_WINDOW}, or ophthai download-model"

_REPORT_INTERVAL_S = 0.25


class DownloadCancelled(ModelUnavailable):
    """The download was cancelled; the model stays not installed."""


def shown_hub_cache_dir() -> Path:
    """The Hub cache a look-up reads, to name it: :func:`hub_cache_dir`, else
    huggingface_hub's default (``~/.cache/huggingface/hub``)."""
    if cache := hub_cache_dir():
        return cache
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_endpoint() -> str | None:
    """The Hub address: ``HF_ENDPOINT`` read now, not when huggingface_hub was imported."""
    return os.environ.get("HF_ENDPOINT") or None


def hub_cache_dir() -> Path | None:
    """The Hub cache: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, read now; None for the default."""
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache)
    if home := os.environ.get("HF_HOME"):
        return Path(home) / "hub"
    return None


class _Progress:
    """Bytes counted across every progress bar of one download."""

    def __init__(
        self,
        model_id: str,
        callback: ProgressCallback | None,
        cancel: threading.Event | None,
    ) -> None:
        self.model_id = model_id
        self.callback = callback
        self.cancel = cancel
        self.lock = threading.Lock()
        self.bars: dict[int, tuple[Any, int]] = {}  # id(bar) -> (bar, bytes counted)
        self.expected_bytes = 0  # from a dry run, when huggingface_hub offers one
        self.last_report = 0.0

    def check_cancel(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise DownloadCancelled(f"The download of {self.model_id} was cancelled.")

    def advance(self, bar: Any, unit: str, name: str, amount: float) -> None:
        self.check_cancel()
        if unit != "B" or "transfer" in name:
            return  # file counters and network-byte bars; bytes written are what is reported
        with self.lock:
            _bar, counted = self.bars.get(id(bar), (bar, 0))
            self.bars[id(bar)] = (bar, counted + int(amount))
            now = time.monotonic()
            if now - self.last_report < _REPORT_INTERVAL_S:
                return
            self.last_report = now
            done, total = self.totals()
        self.report(done, total)

    def totals(self) -> tuple[int, int]:
        """Bytes written so far, and the total expected (grows as files start)."""
        done = sum(n for _b, n in self.bars.values())
        started = sum(int(getattr(b, "total", 0) or 0) for b, _n in self.bars.values())
        return done, max(started, self.expected_bytes, done)

    def report(self, done: int, total: int) -> None:
        if self.callback is None:
            return
        fraction = done / total if total > 0 else 0.0
        message = f"Downloading {self.model_id}: {format_bytes(done)}"
        if total > 0:
            message += f" of {format_bytes(total)}"
        self.callback(fraction, message)


def _bar_class(progress: _Progress) -> type:
    """A silent tqdm subclass feeding ``progress``; huggingface_hub instantiates it."""
    from huggingface_hub.utils import tqdm as hub_tqdm

    class _CountingBar(hub_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            # A disabled tqdm keeps neither, so they are read here.
            self._ophthai_name = str(kwargs.get("name") or kwargs.get("desc") or "")
            self._ophthai_unit = str(kwargs.get("unit") or "it")
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            progress.check_cancel()

        def update(self, n: float | None = 1) -> bool | None:
            progress.advance(self, self._ophthai_unit, self._ophthai_name, n or 0)
            return super().update(n)

    return _CountingBar


def download_model(
    model_id: str,
    revision: str | None = None,
    *,
    cache_dir: Path | None = None,
    local_dir: Path | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    endpoint: str | None = None,
) -> Path:
    """Download ``model_id`` at ``revision`` and return its local folder.

    Files already in the cache are not fetched again; an interrupted download resumes.

    Args:
        model_id: Hub repository, e.g. ``"OctoMed/OctoMed-7B"``.
        revision: Branch, tag or commit; None for the default branch.
        cache_dir: Hub cache to fill; None for ``HF_HUB_CACHE``/``HF_HOME`` or the default.
        local_dir: Download into this plain folder instead of the cache.
        progress: Called with (fraction 0..1, message) a few times a second.
        cancel: Set it to stop the download.
        endpoint: Hub address; None for ``HF_ENDPOINT`` or huggingface.co.

    Raises:
        DownloadCancelled: ``cancel`` was set.
        ModelUnavailable: The Hub could not be reached or refused the download.
    """
    tracker = _Progress(model_id, progress, cancel)
    tracker.check_cancel()
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        log.warning("HF_HUB_OFFLINE is set; the download will fail unless it is cached")
    cache = cache_dir or hub_cache_dir()
    options: dict[str, Any] = {
        "revision": revision,
        "cache_dir": str(cache) if cache else None,
        "local_dir": str(local_dir) if local_dir else None,
        "allow_patterns": ALLOW_PATTERNS,
        "endpoint": endpoint or hub_endpoint(),
    }
    started = time.monotonic()
    log.info("downloading %s (revision %s)", model_id, revision or "default")
    try:
        tracker.expected_bytes = _bytes_to_fetch(model_id, options, _bar_class(tracker))
        tracker.check_cancel()
        folder = snapshot_download(
            model_id, tqdm_class=_bar_class(tracker), max_workers=4, **options
        )
    except DownloadCancelled:
        log.info("download of %s cancelled", model_id)
        raise
    except (HfHubHTTPError, OSError, ValueError) as exc:
        if isinstance(exc, LocalEntryNotFoundError) or _is_network_error(exc):
            raise ModelUnavailable(
                f"{model_id} could not be downloaded: the Hugging Face Hub is not reachable "
                f"({_reason(exc)}). Check the network connection, or copy the model folder "
                "to this computer and set OPHTHAI_MODEL_PATH to it."
            ) from exc
        raise ModelUnavailable(f"{model_id} could not be downloaded: {_reason(exc)}") from exc
    tracker.check_cancel()
    if progress is not None:
        done, _total = tracker.totals()
        progress(1.0, f"Downloaded {model_id} ({format_bytes(done)} fetched).")
    log.info("downloaded %s in %.0f s", model_id, time.monotonic() - started)
    return Path(folder)


def _bytes_to_fetch(model_id: str, options: dict[str, Any], bar_class: type) -> int:
    """Bytes still to download, from huggingface_hub's dry run (0 where it has none)."""
    import inspect

    from huggingface_hub import snapshot_download

    if "dry_run" not in inspect.signature(snapshot_download).parameters:
        return 0  # huggingface_hub < 1.0: the total grows as files start instead
    infos = snapshot_download(model_id, dry_run=True, tqdm_class=bar_class, **options)
    return sum(info.file_size or 0 for info in infos if info.will_download)


_NETWORK_ERROR_NAMES = frozenset(
    {"ConnectError", "ConnectTimeout", "TimeoutException", "NetworkError", "OfflineModeIsEnabled"}
)


def _is_network_error(exc: BaseException) -> bool:
    """Whether ``exc`` or a cause is a connection failure (of whichever HTTP library)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionError | TimeoutError) or any(
            cls.__name__ in _NETWORK_ERROR_NAMES for cls in type(seen).__mro__
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    """The innermost cause's message, on one line."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
