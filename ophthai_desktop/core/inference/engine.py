"""The OctoMed-7B inference engine: find, download, load, run and unload the model.

The engine owns the model. Its slow methods (:meth:`InferenceEngine.load`,
:meth:`~InferenceEngine.unload`, :meth:`~InferenceEngine.download`,
:meth:`~InferenceEngine.generate`) run on the calling thread, which is the inference
worker thread, and are serialized by a lock. :meth:`~InferenceEngine.status` is cheap and
safe from any thread, the GUI thread included, and
:meth:`~InferenceEngine.update_settings` never waits for the slow methods. Every state
change is published as a :class:`~ophthai_desktop.core.events.ModelStateChanged` event.

Nothing here goes online except :meth:`~InferenceEngine.download`: the model is read
from ``OPHTHAI_MODEL_PATH`` or from the Hugging Face cache, always as a local folder.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from PIL import Image

from ophthai_desktop.core.errors import InvalidInput, ModelUnavailable
from ophthai_desktop.core.events import EventBus, ModelStateChanged
from ophthai_desktop.core.imaging import fits_the_model, too_elongated_message
from ophthai_desktop.core.inference import devices
from ophthai_desktop.core.inference.download import (
    HOW_TO_DOWNLOAD,
    DownloadCancelled,
    ProgressCallback,
    download_model,
    hub_cache_dir,
    shown_hub_cache_dir,
)
from ophthai_desktop.core.inference.generation import (
    CancelCriteria,
    DeltaCallback,
    DeltaStreamer,
    ThinkingBudgetProcessor,
    hidden_token_ids,
)
from ophthai_desktop.core.inference.memory import empty_device_cache, release_memory
from ophthai_desktop.core.inference.parsing import (
    THINK_CLOSE,
    THINK_OPEN,
    AnswerParseError,
    ParsedAnswer,
    parse_answer,
    split_output,
)
from ophthai_desktop.core.inference.preprocess import prepare_image, upright_size
from ophthai_desktop.core.inference.processor import (
    ModelInputs,
    load_processor,
    processor_fitter,
)
from ophthai_desktop.core.inference.prompt import (
    PROMPT_VERSION,
    build_messages,
    longest_prompt_tokens,
)
from ophthai_desktop.core.settings import Settings
from ophthai_desktop.core.units import format_bytes

log = logging.getLogger(__name__)

#: How long a "(not) installed" answer is reused by :meth:`InferenceEngine.status`.
INSTALL_RECHECK_S = 5.0
#: How long :meth:`InferenceEngine.confirm_installed` waits for its look at the files
#: (a share that hangs): then the status as known, the look's finding published later.
CONFIRM_WAIT_S = 1.0

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")


class ModelState(StrEnum):
    """Where the model stands; the values go over the wire."""

    NOT_INSTALLED = "not_installed"
    DOWNLOADING = "downloading"
    INSTALLED = "installed"
    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    ERROR = "error"


#: States in which nothing is loaded or in progress.
_IDLE_STATES = frozenset({ModelState.NOT_INSTALLED, ModelState.INSTALLED})


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot of the engine for the model manager, the status bar and the API.

    Attributes:
        state: The current :class:`ModelState`.
        message: One sentence for a person, saying what to do where there is something.
        model_id: The configured Hub id.
        model_source: The folder the model is read from, or the id when not installed.
        revision: The commit hash of the model files, when known; for a local folder
            (``OPHTHAI_MODEL_PATH``) a hash of its config and weight files' index.
        model_name: What is (or would be) loaded, for messages and provenance: the Hub
            id, or the local folder when ``OPHTHAI_MODEL_PATH`` is set.
        device: ``"cuda:0"``, ``"mps"`` or ``"cpu"`` once resolved (at loading).
        dtype: Compute dtype once resolved.
        quantization: ``"none"``, ``"8bit"`` or ``"4bit"``.
        parameters: The model's parameter count, when installed.
        estimated_bytes: Memory the model needs on ``device``, once resolved.
        free_bytes: Free GPU memory (CUDA) or available RAM, when last measured.
        used_bytes: Memory the loaded model holds; None when not loaded.
        progress: Download progress 0..1 while downloading.
        error: The reason, in state ``error``.
        damaged: In state ``not_installed``: model files were found, but some are
            missing or unreadable (an interrupted copy or download), so the folder is
            to be repaired or downloaded again rather than installed.
        fault: In state ``not_installed``: what is missing or damaged (which folder or
            files), without the advice ``message`` goes on with, for callers that give
            their own (a path may hold a full stop, so it is not cut out of ``message``).
    """

    state: ModelState
    message: str
    model_id: str
    model_source: str
    revision: str | None = None
    model_name: str = ""
    device: str | None = None
    dtype: str | None = None
    quantization: str = "none"
    parameters: int | None = None
    estimated_bytes: int | None = None
    free_bytes: int | None = None
    used_bytes: int | None = None
    progress: float | None = None
    error: str | None = None
    damaged: bool = False
    fault: str | None = None

    @property
    def is_ready(self) -> bool:
        """Whether :meth:`InferenceEngine.generate` can run."""
        return self.state is ModelState.READY

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values."""
        data = dataclasses.asdict(self)
        data["state"] = self.state.value
        return data


@dataclass(frozen=True)
class GenerationResult:
    """One analysis by the model, with everything needed to store and reproduce it.

    Attributes:
        raw_text: The whole output (chat-control tokens removed; think tags kept).
        reasoning: The text inside ``<think>``.
        answer_text: The text after ``</think>``.
        parsed: The validated answer, or None when it did not parse.
        parse_error: Why it did not parse.
        named_classifications: What an answer that did not parse gave as its
            classification (:attr:`AnswerParseError.classifications`).
        finish_reason: ``"eos"``, ``"length"`` (token cap) or ``"cancelled"``.
        generation: The settings it ran with (max_new_tokens, thinking_budget, ...).
        time_to_first_token_s: From the call to the first output token (includes
            preprocessing and the prompt's forward pass).
        thinking_forced_closed: The thinking budget closed the reasoning.
    """

    raw_text: str
    reasoning: str
    answer_text: str
    parsed: ParsedAnswer | None
    parse_error: str | None
    prompt_version: str
    model_id: str
    model_source: str
    revision: str | None
    device: str
    dtype: str
    quantization: str
    generation: dict[str, Any] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    time_to_first_token_s: float | None = None
    total_s: float = 0.0
    cancelled: bool = False
    thinking_forced_closed: bool = False
    finish_reason: str = "eos"
    named_classifications: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Installation:
    """Where the model files are, or why they are not usable."""

    folder: Path | None
    source: str
    #: What is missing or damaged, when the files are not usable (one sentence).
    fault: str | None = None
    #: What to do about ``fault``.
    advice: str = ""
    revision: str | None = None
    #: What is loaded from here: the Hub id, or the local folder (OPHTHAI_MODEL_PATH).
    name: str = ""
    model_type: str | None = None
    parameters: int | None = None
    #: ``config.json``'s content, for the memory estimate.
    config: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    #: Files were found but some are missing or unreadable (``fault`` names them).
    damaged: bool = False

    @property
    def problem(self) -> str | None:
        """Why the files are not usable and what to do, for a person; None when usable."""
        return None if self.fault is None else f"{self.fault} {self.advice}"


@dataclass
class _Loaded:
    model: Any
    processor: Any
    plan: devices.DevicePlan
    install: _Installation
    hidden_ids: frozenset[int]
    eos_ids: frozenset[int]
    #: Token ids of ``</think>``, which the thinking budget forces.
    close_ids: list[int]
    #: Rendered chat templates by (question, modality): rendering one is ~1 ms of Jinja
    #: per analysis for the same few strings.
    prompts: dict[tuple[str | None, str | None], str] = field(default_factory=dict)
    #: The processor, tokenizing each prompt once (see :class:`ModelInputs`).
    inputs: ModelInputs = field(init=False)

    def __post_init__(self) -> None:
        self.inputs = ModelInputs(self.processor)

    @classmethod
    def of(
        cls, model: Any, processor: Any, plan: devices.DevicePlan, install: _Installation
    ) -> _Loaded:
        """A loaded model with the token ids the generation hooks need."""
        tokenizer = processor.tokenizer
        return cls(
            model=model,
            processor=processor,
            plan=plan,
            install=install,
            hidden_ids=hidden_token_ids(tokenizer),
            eos_ids=_eos_ids(model, tokenizer),
            close_ids=list(tokenizer.encode(THINK_CLOSE, add_special_tokens=False)),
        )


class InferenceEngine:
    """Runs OctoMed-7B (or another Qwen2.5-VL style model) for the app.

    Args:
        settings: Model id or path, revision, device, quantization, image budget,
            token cap and thinking budget are read from here.
        events: Receives a ``ModelStateChanged`` for every change of state.
        cache_dir: Hugging Face cache to read and download into; None means
            ``HF_HUB_CACHE``/``HF_HOME`` as set now, else the default cache.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        events: EventBus | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self._settings = settings
        self._events = events
        self._cache_dir = cache_dir
        #: Frees what a dropped model held (an unload, a failed load), on the worker's
        #: thread: Python's cyclic garbage, then the device's cache. A collection
        #: destroys every cycle in the process, not only the model's: the desktop runs
        #: it on the GUI thread instead (ui/gc_collector.py), a Qt object destroyed on
        #: another thread leaving its timers to crash the GUI's event loop.
        self.release_memory: Callable[[str | None], None] = release_memory
        # Held for a whole load, unload, download or analysis (see _held); not re-entrant:
        # none of them calls another.
        self._lock = threading.Lock()
        #: Settings saved while the lock was held, taken by whoever releases it next.
        self._pending: Settings | None = None
        self._pending_lock = threading.Lock()
        self._status_lock = threading.RLock()
        # Held by the installed check's own thread while it runs (released there).
        self._checking = threading.Lock()
        #: The look confirm_installed started and has not ended (one at a time): set
        #: when it ends, and its number (looks are counted as they begin).
        self._confirming: tuple[threading.Event, int] | None = None
        self._looks_begun = 0
        self._confirming_lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._parameter_counts: dict[Path, int | None] = {}
        self._install = self._locate()
        self._install_checked_at = time.monotonic()
        self._status = EngineStatus(
            state=ModelState.INSTALLED if self._install.folder else ModelState.NOT_INSTALLED,
            message=self._install_message(self._install),
            model_id=settings.model_id,
            model_source=self._install.source,
            revision=self._install.revision,
            model_name=self._install.name,
            quantization=settings.quantization,
            parameters=self._install.parameters,
            damaged=self._install.damaged,
            fault=self._install.fault,
        )

    @property
    def settings(self) -> Settings:
        """The settings in use: those saved during a load, unload, download or analysis
        once it is over (see :meth:`update_settings`)."""
        return self._settings

    # Status ----------------------------------------------------------------------------

    def status(self) -> EngineStatus:
        """The current status. Cheap and never waits; any thread (the GUI's included).

        While nothing is loaded, whether the files are installed is checked again at
        most every :data:`INSTALL_RECHECK_S` seconds, so a model copied into place shows
        up. That check looks at folders that may be on a slow or unplugged share, and
        another thread may be checking already, so it runs on a short-lived thread of
        its own: what it finds is published as :class:`ModelStateChanged` and returned
        by the next call.
        """
        due = time.monotonic() - self._install_checked_at > INSTALL_RECHECK_S
        # The lock's non-blocking take also says no check is running yet.
        if self._status.state in _IDLE_STATES and due and self._checking.acquire(blocking=False):
            try:
                threading.Thread(
                    target=self._check_install, name="model-install-check", daemon=True
                ).start()
            except RuntimeError:  # no thread to be had (shutting down): next time
                self._checking.release()
        return self._status

    def _check_install(self) -> None:
        """Runs on the thread :meth:`status` starts."""
        try:
            self._recheck_while_idle()
        finally:
            self._install_checked_at = time.monotonic()  # a failure waits its turn too
            self._checking.release()

    def _recheck_while_idle(self) -> None:
        """Look at the files again (on a check's own thread) where nothing took the
        model meanwhile: a load looks at them itself. A failure is logged."""
        try:
            with self._status_lock:
                if self._status.state in _IDLE_STATES and self._loaded is None:
                    self._recheck_install(settle=True)
        except Exception:
            log.warning("checking whether the model is installed failed", exc_info=True)

    def confirm_installed(self) -> EngineStatus:
        """The status, with the files looked at now where it says ``installed`` or
        ``not_installed`` and nothing is loaded: for a request about to queue an
        analysis, which the files gone since they were last checked (an unload, then the
        folder deleted) left waiting in the queue until a load found them gone, and the
        files put back (or a folder caught half deleted by an earlier look) refused as
        not installed. The state found is published at once, as :meth:`status`'s
        recheck would have made it some seconds later.

        Cheap (a few stats and the config's read) but it looks at folders, maybe on a
        share that hangs: the look runs on a thread of its own, waited for at most
        :data:`CONFIRM_WAIT_S` (then the status as known is returned and the finding
        published when it comes), so that a dead share holds no caller's thread (the
        window's short-call pool, the server's) for longer; a look still running is
        waited for rather than a second started alongside, and where it began before
        this call (the files may have changed since), a new one follows it within the
        same wait. A thread of a pool, never the GUI's or the server's event loop. Any
        other state is returned as it is (an ``error`` is cleared by :meth:`refresh`
        only, and a loaded model has its files open).
        """
        if self._status.state in _IDLE_STATES and self._loaded is None:
            deadline = time.monotonic() + CONFIRM_WAIT_S
            with self._confirming_lock:
                begun_before = self._looks_begun  # those may have looked too early
            while True:
                with self._confirming_lock:
                    look = self._confirming
                    if look is None:
                        self._looks_begun += 1
                        look = self._confirming = (threading.Event(), self._looks_begun)
                        try:
                            threading.Thread(
                                target=self._confirm,
                                args=(look[0],),
                                name="model-install-confirm",
                                daemon=True,
                            ).start()
                        except RuntimeError:  # no thread to be had (shutting down)
                            self._confirming = None
                            return self._status
                done, number = look
                if not done.wait(max(0.0, deadline - time.monotonic())) or number > begun_before:
                    break
                # A look begun before this call may have looked before the files were
                # put back (or went): a request made after that was answered with what
                # they were. One more, begun now, within the same wait.
        return self._status

    def _confirm(self, done: threading.Event) -> None:
        """Runs on the thread :meth:`confirm_installed` starts."""
        try:
            self._recheck_while_idle()
        finally:
            with self._confirming_lock:
                self._confirming = None
            done.set()

    def refresh(self) -> EngineStatus:
        """Check the model files now (for example after the user copied them). Any thread.

        Also clears an ``error`` state; leaves a loaded or busy engine's state alone.
        """
        with self._status_lock:
            self._recheck_install(
                settle=self._status.state in _IDLE_STATES or self._status.state is ModelState.ERROR
            )
        return self._status

    def update_settings(self, settings: Settings) -> EngineStatus:
        """Use new settings: the generation settings (token cap, thinking budget, image
        budget) from the next analysis; the model source, device and quantization from
        the next load (unload first to apply them now). With nothing loaded, the model
        files the new settings name are checked at once.

        Any thread but the GUI's (that check looks at folders, maybe on a share). Never
        waits for a load, unload, download or analysis: the settings are left in a slot
        that the thread running it empties as it finishes (see :meth:`_release`), so that
        settings never change in the middle of one. A load that was running loaded with
        the settings it started with; once it is over, failed or not, the settings are
        taken, and with nothing loaded (it failed) the files are checked with them,
        as they would have been with nothing loading. Of two saves before that, the
        last wins. Returns the status as it is now, before a busy engine took them.
        """
        with self._pending_lock:
            self._pending = settings
        if self._lock.acquire(blocking=False):  # else its holder takes them as it ends
            self._release()
        return self._status

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        """Hold the engine's lock for one load, unload, download or analysis, which runs
        with the settings saved last: a save made as the lock's last holder released it
        may still be in the slot when this thread, which waited for the lock, gets it."""
        self._lock.acquire()
        try:
            self._take_pending()
            yield
        finally:
            self._release()

    def _release(self) -> None:
        """Take the settings saved while the lock was held, then release it.

        A save made just as the lock is released finds it taken and leaves its settings
        in the slot: so the slot is looked at again once the lock is free, and taken by
        this thread if it gets the lock again; a thread that took the lock meanwhile
        takes them itself as it releases it. No save is left waiting in the slot.
        """
        while True:
            try:
                self._take_pending()
            finally:
                self._lock.release()
            if self._pending is None or not self._lock.acquire(blocking=False):
                return

    def _take_pending(self) -> None:
        """With the lock held: use the settings saved, if any (see update_settings)."""
        with self._pending_lock:
            settings, self._pending = self._pending, None
        if settings is None:
            return
        self._settings = settings
        if self._loaded is not None:
            return
        try:
            self._recheck_install(settle=True)
            self._set_status(model_id=settings.model_id, quantization=settings.quantization)
        except Exception:  # not to lose the result of the analysis or load releasing
            log.warning("checking the model files of the new settings failed", exc_info=True)

    @property
    def is_ready(self) -> bool:
        """Whether the model is loaded."""
        return self._status.state is ModelState.READY

    def _set_status(self, **changes: Any) -> None:
        with self._status_lock:
            old = self._status
            new = dataclasses.replace(old, **changes)
            self._status = new
            if (new.state, new.message, new.progress) == (old.state, old.message, old.progress):
                return
            if new.state is not old.state:
                log.info("model state %s -> %s", old.state.value, new.state.value)
            if self._events is not None:
                self._events.publish(
                    ModelStateChanged(
                        state=new.state.value, message=new.message, progress=new.progress
                    )
                )

    def _recheck_install(self, *, settle: bool) -> _Installation:
        """Locate the files; with ``settle``, set the state to (not_)installed from them.

        Settling with nothing loaded also forgets what the last load resolved (device,
        dtype, quantization, and the estimate and memory figures made for that device):
        an unloaded model reports none of them, as one never loaded does, rather than
        the device it no longer occupies.
        """
        with self._status_lock:
            install = self._locate()
            self._install = install
            self._install_checked_at = time.monotonic()
            if settle:
                unloaded: dict[str, Any] = {}
                if self._loaded is None:
                    unloaded = {
                        "device": None,
                        "dtype": None,
                        "quantization": self._settings.quantization,
                        "estimated_bytes": None,
                        "free_bytes": None,
                        "used_bytes": None,
                    }
                self._set_status(
                    state=ModelState.INSTALLED if install.folder else ModelState.NOT_INSTALLED,
                    message=self._install_message(install),
                    model_source=install.source,
                    revision=install.revision,
                    model_name=install.name,
                    parameters=install.parameters,
                    damaged=install.damaged,
                    fault=install.fault,
                    progress=None,
                    error=None,
                    **unloaded,
                )
            return install

    # Finding the files -------------------------------------------------------------------

    def _locate(self) -> _Installation:
        """Find the model folder without touching the network."""
        settings = self._settings
        if settings.model_path is not None:
            folder = settings.model_path.expanduser()
            if folder.is_file():
                holder = folder.parent
                hint = (
                    f"{holder}, the folder that holds it"
                    if _holds_model_files(holder)
                    else "the folder that holds the model's files"
                )
                return _Installation(
                    None,
                    str(folder),
                    f"OPHTHAI_MODEL_PATH is {folder}, which is a file, not a folder.",
                    f"Set it to {hint} (config.json and the .safetensors files).",
                    name=str(folder),
                )
            if not folder.is_dir():
                return _Installation(
                    None,
                    str(folder),
                    f"OPHTHAI_MODEL_PATH is {folder}, but that folder does not exist.",
                    "Point it to the model folder, or download the model into it "
                    f"({HOW_TO_DOWNLOAD}).",
                    name=str(folder),
                )
            return self._inspect(folder, str(folder), name=str(folder), local=True)
        from huggingface_hub import try_to_load_from_cache

        cache = self._cache_dir or hub_cache_dir()
        config = try_to_load_from_cache(
            settings.model_id,
            "config.json",
            cache_dir=str(cache) if cache else None,
            revision=settings.model_revision,
        )
        if not isinstance(config, str):
            return _Installation(
                None,
                settings.model_id,
                f"{settings.model_id} is not installed: it is not in the Hugging Face "
                f"cache ({cache or shown_hub_cache_dir()}).",
                f"Download it ({HOW_TO_DOWNLOAD}), or set OPHTHAI_MODEL_PATH to a folder "
                "that holds the model.",
                name=settings.model_id,
            )
        folder = Path(config).parent
        return self._inspect(folder, str(folder), name=settings.model_id)

    def _inspect(
        self, folder: Path, source: str, *, name: str, local: bool = False
    ) -> _Installation:
        """What ``folder`` holds. A ``local`` folder (OPHTHAI_MODEL_PATH) is whatever
        was put there, so its revision is a hash of its files, not the Hub commit its
        config may name."""
        missing = _missing_files(folder)
        if missing and not _holds_model_files(folder):
            return _Installation(
                None,
                source,
                f"The model is not installed: {folder} holds none of its files.",
                f"Download it ({HOW_TO_DOWNLOAD}), or point OPHTHAI_MODEL_PATH to a folder "
                "that holds the model.",
                name=name,
            )
        if missing:
            return _Installation(
                None,
                source,
                f"The model in {folder} is damaged: {', '.join(missing)} "
                f"{'is' if len(missing) == 1 else 'are'} missing (a copy or download cut "
                "short?).",
                f"Download it again ({HOW_TO_DOWNLOAD}), or point OPHTHAI_MODEL_PATH to a "
                "complete copy.",
                name=name,
                damaged=True,
            )
        try:
            config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return _Installation(
                None,
                source,
                f"The model in {folder} is damaged: its config.json is unreadable ({exc}).",
                f"Download it again ({HOW_TO_DOWNLOAD}), or point OPHTHAI_MODEL_PATH to a "
                "complete copy.",
                name=name,
                damaged=True,
            )
        if _COMMIT_RE.fullmatch(folder.name):
            revision: str | None = folder.name
        elif local:
            try:
                revision = _folder_identity(folder)
            except OSError:  # unreadable now: loading will say why
                revision = None
        else:
            revision = config.get("_commit_hash")
        if folder not in self._parameter_counts:
            self._parameter_counts[folder] = devices.count_parameters(folder)
        return _Installation(
            folder,
            source,
            name=name,
            revision=revision,
            model_type=config.get("model_type"),
            parameters=self._parameter_counts[folder],
            config=config,
        )

    def _install_message(self, install: _Installation) -> str:
        if install.folder is None:
            return install.problem or "The model is not installed."
        if install.name == str(install.folder):
            return f"The model in {install.folder} is installed and not loaded."
        return f"{install.name} is installed ({install.folder}) and not loaded."

    # Download ----------------------------------------------------------------------------

    def download(
        self,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """Download the configured model; state ``downloading`` → ``installed``.

        Runs on the calling (worker) thread. With ``OPHTHAI_MODEL_PATH`` set the files go
        into that folder, otherwise into the Hugging Face cache. Progress is published as
        ``ModelStateChanged`` events and passed to ``progress``.

        Raises:
            DownloadCancelled: ``cancel`` was set; the state returns to ``not_installed``.
            ModelUnavailable: The download failed; the state is ``error``.
        """
        with self._held():
            install = self._recheck_install(settle=self._loaded is None)
            if install.folder is not None:
                return install.folder
            settings = self._settings
            self._set_status(
                state=ModelState.DOWNLOADING,
                message=f"Downloading {settings.model_id}...",
                progress=0.0,
                error=None,
            )

            def on_progress(fraction: float, message: str) -> None:
                self._set_status(message=message, progress=fraction)
                if progress is not None:
                    progress(fraction, message)

            try:
                folder = download_model(
                    settings.model_id,
                    settings.model_revision,
                    cache_dir=self._cache_dir,
                    local_dir=settings.model_path,
                    progress=on_progress,
                    cancel=cancel,
                )
            except DownloadCancelled as exc:
                self._recheck_install(settle=True)
                if self._status.state is ModelState.NOT_INSTALLED:
                    self._set_status(message=f"{exc.message} {self._status.message}")
                raise
            except ModelUnavailable as exc:
                self._set_status(
                    state=ModelState.ERROR, message=exc.message, error=exc.message, progress=None
                )
                raise
            install = self._recheck_install(settle=True)
            if install.folder is None:
                reason = install.problem or "the downloaded files are incomplete"
                self._set_status(state=ModelState.ERROR, message=reason, error=reason)
                raise ModelUnavailable(reason)
            return folder

    # Load and unload ---------------------------------------------------------------------

    def load(self) -> EngineStatus:
        """Load the model onto the configured device; state ``loading`` → ``ready``.

        Runs on the calling (worker) thread; takes minutes for the 7B model. Returns at
        once when already loaded. Checks the memory estimate first and refuses, with a
        message, a model that would not fit.

        Raises:
            ModelUnavailable: Not installed, the device or quantization is unavailable,
                not enough memory, or the files failed to load (state ``error``).
        """
        with self._held():
            if self._loaded is not None:
                return self._status
            install = self._recheck_install(settle=True)
            if install.folder is None:
                raise ModelUnavailable(install.problem or "The model is not installed.")
            self._set_status(
                state=ModelState.LOADING,
                message=f"Loading {install.name}...",
                error=None,
                progress=None,
            )
            try:
                loaded = self._load(install)
            except ModelUnavailable as exc:
                self._fail_load(exc.message)
                raise
            except Exception as exc:  # transformers, safetensors, CUDA: translated here
                log.exception("loading %s failed", install.name)
                reason = f"Loading {install.name} failed: {exc}"
                self._fail_load(reason)
                raise ModelUnavailable(reason) from exc
            self._loaded = loaded
            plan = loaded.plan
            detail = plan.dtype if plan.quantization == "none" else plan.quantization
            self._set_status(
                state=ModelState.READY,
                message=f"{install.name} is ready on {plan.device} ({detail}).",
                used_bytes=devices.used_memory_bytes(loaded.model, plan.device),
                free_bytes=devices.free_memory_bytes(plan.device),
            )
            return self._status

    def _fail_load(self, reason: str) -> None:
        self.release_memory(self._status.device)  # what a half-done load left behind
        self._set_status(state=ModelState.ERROR, message=reason, error=reason, used_bytes=None)

    def _load(self, install: _Installation) -> _Loaded:
        assert install.folder is not None
        settings = self._settings
        plan = devices.plan_device(settings.device, settings.quantization)
        runtime = self._runtime_bytes(install, plan, settings)
        estimate = self._estimate(install, plan, settings)
        free = devices.free_memory_bytes(plan.device)
        self._set_status(
            device=plan.device,
            dtype=plan.dtype,
            quantization=plan.quantization,
            estimated_bytes=estimate,
            free_bytes=free,
            message=f"Loading {install.name} on {plan.device} ({plan.dtype})...",
        )
        if estimate is not None and free is not None and estimate > free:
            raise ModelUnavailable(
                self._too_large_message(install.name, plan, install.parameters or 0, free, runtime)
            )
        damaged = _damaged_files(install.folder)
        if damaged:  # say so, rather than the loader's "incomplete metadata" or JSON error
            raise ModelUnavailable(
                f"The model in {install.folder} has damaged or half-copied files "
                f"({', '.join(damaged)}). Copy them again from a complete copy, or download "
                "the model again."
            )
        started = time.monotonic()
        processor = load_processor(install.folder, install.model_type)
        model = _load_model(install.folder, install.model_type, plan)
        log.info("loaded %s on %s in %.1f s", install.name, plan.device, time.monotonic() - started)
        return _Loaded.of(model, processor, plan, install)

    def estimate_bytes(
        self, plan: devices.DevicePlan, settings: Settings | None = None
    ) -> int | None:
        """Memory the installed model needs loaded as ``plan`` says and running the
        longest analysis ``settings`` allow (those in use by default), as the load checks
        it against the free memory (the model manager shows it before a load, for the
        settings saved last: a busy engine takes them only once it is done); None when
        not installed."""
        return self._estimate(self._install, plan, settings or self._settings)

    def _estimate(
        self, install: _Installation, plan: devices.DevicePlan, settings: Settings
    ) -> int | None:
        if not install.parameters:
            return None
        return devices.estimate_memory_bytes(
            install.parameters,
            plan.precision,
            device=plan.device,
            runtime_bytes=self._runtime_bytes(install, plan, settings),
        )

    def _runtime_bytes(
        self, install: _Installation, plan: devices.DevicePlan, settings: Settings
    ) -> int | None:
        """What the longest analysis ``settings`` allow needs over the weights, from the
        model's config; None when the config does not tell."""
        if install.config is None:
            return None
        workload = devices.Workload(
            text_tokens=longest_prompt_tokens(),
            max_pixels=settings.max_pixels,
            max_new_tokens=settings.max_new_tokens,
        )
        return devices.runtime_memory_bytes(install.config, workload, dtype=plan.dtype)

    def _too_large_message(
        self,
        name: str,
        plan: devices.DevicePlan,
        parameters: int,
        free: int,
        runtime: int | None,
    ) -> str:
        need = devices.estimate_memory_bytes(
            parameters, plan.precision, device=plan.device, runtime_bytes=runtime
        )
        where = "GPU memory" if plan.device.startswith("cuda") else "memory"
        message = (
            f"{name} needs about {format_bytes(need)} of {where} on "
            f"{plan.device} ({plan.precision}), but only {format_bytes(free)} is free."
        )
        if plan.device.startswith("cuda") and plan.quantization != "4bit":
            four_bit = devices.estimate_memory_bytes(
                parameters, "4bit", device=plan.device, runtime_bytes=runtime
            )
            if four_bit <= free:
                return (
                    f"{message} Set OPHTHAI_QUANTIZATION=4bit (about "
                    f"{format_bytes(four_bit)}), or close programs using the GPU."
                )
        return f"{message} Close other programs or use a machine with more memory."

    def unload(self) -> EngineStatus:
        """Free the model; state ``unloading`` → ``installed``. Worker thread.

        Waits for a running :meth:`generate` to finish; cancel it first.
        """
        with self._held():
            loaded, self._loaded = self._loaded, None
            if loaded is None:
                if self._status.state is ModelState.ERROR:
                    self._recheck_install(settle=True)
                return self._status
            self._set_status(
                state=ModelState.UNLOADING, message=f"Unloading {loaded.install.name}..."
            )
            device = loaded.plan.device
            del loaded
            self.release_memory(device)
            self._recheck_install(settle=True)
            return self._status

    # Generation --------------------------------------------------------------------------

    def generate(
        self,
        image: Image.Image,
        *,
        on_delta: DeltaCallback | None = None,
        cancel: threading.Event | None = None,
        question: str | None = None,
        modality: str | None = None,
    ) -> GenerationResult:
        """Analyse one image, streaming the output as it is generated.

        Runs on the calling thread, the inference worker thread, and blocks it until
        the output is complete, the token cap is reached, or ``cancel`` is set; on_delta
        is called on that thread. Greedy decoding: the same image gives the same output
        on the same machine. A cancelled run returns a result with ``cancelled=True``.
        An answer that does not parse is returned with ``parse_error`` set, never with a
        made-up result.

        Args:
            image: Any Pillow image; see :func:`prepare_image`.
            on_delta: Receives each new piece of text.
            cancel: Set it (from any thread) to stop after the current token.
            question: An optional question from the clinician.
            modality: An optional hint such as ``"OCT"``, ``"OCTA"`` or ``"fundus"``.

        Raises:
            ModelUnavailable: The model is not loaded, or the device ran out of memory.
            InvalidInput: The image cannot be read.
        """
        started = time.perf_counter()
        with self._held():
            loaded = self._loaded
            if loaded is None:
                raise ModelUnavailable(
                    f"The model is not loaded ({self._status.state.value}). {self._status.message}"
                )
            return self._generate(loaded, image, on_delta, cancel, question, modality, started)

    def _generate(
        self,
        loaded: _Loaded,
        image: Image.Image,
        on_delta: DeltaCallback | None,
        cancel: threading.Event | None,
        question: str | None,
        modality: str | None,
        started: float,
    ) -> GenerationResult:
        import torch

        settings = self._settings
        plan = loaded.plan
        processor = loaded.processor
        max_pixels = settings.max_pixels
        min_pixels = min(settings.min_pixels, max_pixels)
        fitting = processor_fitter(processor, min_pixels=min_pixels, max_pixels=max_pixels)
        images_kwargs: dict[str, Any] = {
            "size": {"shortest_edge": min_pixels, "longest_edge": max_pixels}
        }
        if fitting is None:
            rgb = prepare_image(image)
        else:
            model_size = fitting.fit(upright_size(image))
            rgb = prepare_image(
                image, fit=fitting.fit, resample=fitting.resample, own_size=fitting.own_size
            )
            if rgb.size == model_size:
                # Resized to within the budget: the processor's own resize would take a
                # size stepped down under min_pixels back up, over the budget.
                images_kwargs["do_resize"] = False
        width, height = rgb.size
        if not fits_the_model(width, height):
            # Refused at ingest since; a scan stored before, or one the fitting to the
            # image budget made more elongated, still ends here. The processor would
            # say so with a bare ValueError.
            message = too_elongated_message(width, height)
            raise InvalidInput(f"{message[0].upper()}{message[1:]}.", field="image")
        prompt = loaded.prompts.get((question, modality))
        if prompt is None:
            prompt = processor.apply_chat_template(
                build_messages(question, modality), add_generation_prompt=True, tokenize=False
            )
            if len(loaded.prompts) < 64:  # clinicians' free questions are not kept forever
                loaded.prompts[(question, modality)] = prompt
        inputs = loaded.inputs(prompt, rgb, images_kwargs)
        prompt_length = int(inputs["input_ids"].shape[1])

        # A shallow copy is enough: only plain values are set, and generate() deep-copies
        # the configuration it is given before it reads it.
        config = copy.copy(loaded.model.generation_config)
        config.do_sample = False
        # generate() fills None from the checkpoint's sampling defaults and then warns that
        # greedy decoding ignores them; the library's neutral values keep it quiet.
        config.temperature = 1.0
        config.top_p = 1.0
        config.top_k = 50
        config.num_beams = 1
        config.max_new_tokens = settings.max_new_tokens
        settings_used = {
            "max_new_tokens": settings.max_new_tokens,
            "thinking_budget": settings.thinking_budget,
            "do_sample": False,
            "temperature": None,
            "repetition_penalty": getattr(config, "repetition_penalty", None),
            "max_pixels": max_pixels,
            "min_pixels": min_pixels,
        }

        tokenizer = processor.tokenizer
        streamer = DeltaStreamer(tokenizer, on_delta, hidden_ids=loaded.hidden_ids)
        prefilled = _prompt_opens_thinking(prompt)
        if prefilled:  # keep the tag in the output so it reads like an unprompted one
            streamer.push_text(THINK_OPEN)
        budget = ThinkingBudgetProcessor(
            tokenizer,
            prompt_length=prompt_length,
            budget=settings.thinking_budget,
            open_at_start=prefilled,
            close_ids=loaded.close_ids,
        )
        stop = CancelCriteria(cancel or threading.Event())
        completion = 0
        last_token: int | None = None
        if not stop.cancel.is_set():
            try:
                with torch.inference_mode():
                    output = loaded.model.generate(
                        **inputs.to(plan.device),
                        generation_config=config,
                        streamer=streamer,
                        logits_processor=[budget],
                        stopping_criteria=[stop],
                    )
            except torch.cuda.OutOfMemoryError as exc:
                empty_device_cache(plan.device)
                raise ModelUnavailable(
                    f"The GPU ran out of memory during the analysis: lower OPHTHAI_MAX_PIXELS "
                    f"(now {max_pixels}) or OPHTHAI_MAX_NEW_TOKENS, or use OPHTHAI_QUANTIZATION."
                ) from exc
            completion = int(output.shape[1]) - prompt_length
            last_token = int(output[0, -1]) if completion else None
        else:
            stop.triggered = True
            streamer.end()

        raw_text = streamer.text
        reasoning, answer_text = split_output(raw_text)
        cancelled = stop.triggered
        parsed: ParsedAnswer | None = None
        parse_error: str | None = None
        named: tuple[str, ...] = ()
        try:
            parsed = parse_answer(answer_text)
        except AnswerParseError as exc:
            parse_error = exc.message
            named = exc.classifications
        if cancelled:
            finish_reason = "cancelled"
        elif last_token is not None and last_token in loaded.eos_ids:
            finish_reason = "eos"
        else:
            finish_reason = "length" if completion >= settings.max_new_tokens else "eos"
        if parse_error is not None and finish_reason == "length":
            # Otherwise "no complete JSON object" hides that the answer was cut off.
            parse_error = (
                f"{parse_error} The model stopped at its token cap "
                f'({settings.max_new_tokens:,} tokens) before it finished: raise "Max new '
                'tokens" in Settings (OPHTHAI_MAX_NEW_TOKENS), or lower "Thinking budget" '
                "(OPHTHAI_THINKING_BUDGET) to leave more of it for the answer, and analyse again."
            )
        first = streamer.first_token_at
        result = GenerationResult(
            raw_text=raw_text,
            reasoning=reasoning,
            answer_text=answer_text,
            parsed=parsed,
            parse_error=parse_error,
            prompt_version=PROMPT_VERSION,
            model_id=loaded.install.name,
            model_source=loaded.install.source,
            revision=loaded.install.revision,
            device=plan.device,
            dtype=plan.dtype,
            quantization=plan.quantization,
            generation=settings_used,
            prompt_tokens=prompt_length,
            completion_tokens=completion,
            time_to_first_token_s=None if first is None else first - started,
            total_s=time.perf_counter() - started,
            cancelled=cancelled,
            thinking_forced_closed=budget.forced_close,
            finish_reason=finish_reason,
            named_classifications=named,
        )
        log.info(
            "generated %d tokens in %.1f s (%s, parsed=%s)",
            completion,
            result.total_s,
            finish_reason,
            parsed is not None,
        )
        return result


# Helpers -------------------------------------------------------------------------------


def _folder_identity(folder: Path) -> str:
    """A short hash naming a local model folder's contents: its config and its weight
    files' index (the shard list), or the names and sizes of its weight files. Cheap (no
    weights are read), and it changes when the model put there does."""
    digest = hashlib.sha256((folder / "config.json").read_bytes())
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        digest.update(index.read_bytes())
    for weights in sorted(folder.glob("*.safetensors")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
    return f"sha256:{digest.hexdigest()[:12]}"


def _holds_model_files(folder: Path) -> bool:
    """Whether ``folder`` holds any of a model's own files (an empty folder, or one of
    other files, holds no model: it is not installed there rather than damaged)."""
    names = ("config.json", "preprocessor_config.json", "model.safetensors.index.json")
    if any((folder / name).is_file() for name in (*names, *_TOKENIZER_FILES)):
        return True
    return any(folder.glob("*.safetensors"))


def _missing_files(folder: Path) -> list[str]:
    """Files a loadable model folder lacks (checked with a few stats)."""
    missing = [
        name
        for name in ("config.json", "preprocessor_config.json")
        if not (folder / name).is_file()
    ]
    if not any((folder / name).is_file() for name in _TOKENIZER_FILES):
        missing.append("tokenizer.json")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return [*missing, "a readable model.safetensors.index.json"]
        missing.extend(sorted(name for name in shards if not (folder / name).is_file()))
    elif not (folder / "model.safetensors").is_file():
        missing.append("model.safetensors")
    return missing


#: JSON files of a model folder read at loading, where present.
_JSON_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "tokenizer.json",
    "chat_template.json",
)


def _damaged_files(folder: Path) -> list[str]:
    """Files of a model folder that are cut short or unreadable (a copy interrupted):
    JSON that does not parse, and weight files whose size is not what their header
    says. Reads the JSON files and the weights' headers only (for loading, not for
    the status check, which only looks for missing files)."""
    damaged = []
    for name in _JSON_FILES:
        path = folder / name
        if path.is_file():
            try:
                json.loads(path.read_bytes())
            except (OSError, ValueError):
                damaged.append(name)
    index = folder / "model.safetensors.index.json"
    try:
        shards = sorted(set(json.loads(index.read_bytes())["weight_map"].values()))
    except FileNotFoundError:
        shards = ["model.safetensors"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return [*damaged, index.name]
    damaged.extend(name for name in shards if not _complete_safetensors(folder / name))
    return damaged


def _complete_safetensors(path: Path) -> bool:
    """Whether the file is as long as its header says (8 bytes of header length, the
    JSON header, then the tensors up to the largest end offset)."""
    try:
        with path.open("rb") as file:
            header_length = int.from_bytes(file.read(8), "little")
            if not 2 <= header_length <= 100_000_000:
                return False
            header = json.loads(file.read(header_length))
        ends = [
            int(entry["data_offsets"][1]) for key, entry in header.items() if key != "__metadata__"
        ]
        return path.stat().st_size == 8 + header_length + max(ends, default=0)
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return False


#: Modules bitsandbytes leaves in bfloat16: the vision tower and the output layer are
#: small and sensitive. transformers 5 matches a name from the module path's start (or
#: as its end), so the tower is ``model.visual``; a bare ``visual`` matched nothing and
#: the tower was quantized too (seen on an H200). These are Qwen2.5-VL's paths (OctoMed
#: is one); a model of another layout loaded through ``AutoModelForImageTextToText``
#: would have its vision tower quantized.
UNQUANTIZED_MODULES = ["model.visual", "lm_head"]


def quantization_config(quantization: str) -> Any:
    """The ``BitsAndBytesConfig`` for ``"8bit"`` or ``"4bit"`` (NF4, double quantization)."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_8bit=quantization == "8bit",
        load_in_4bit=quantization == "4bit",
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=list(UNQUANTIZED_MODULES),
    )


def _load_model(folder: Path, model_type: str | None, plan: devices.DevicePlan) -> Any:
    import torch

    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, plan.dtype),
        "local_files_only": True,
        # transformers 5 otherwise swaps layers for "kernels" fetched from the Hub when the
        # model lands on a GPU: a download at every load (which fails offline, so the
        # model never loads) and code from outside the installed packages run on
        # patients' scans. Seen on an H200 with transformers 5.25.
        "use_kernels": False,
    }
    if plan.quantization != "none":
        kwargs["quantization_config"] = quantization_config(plan.quantization)
    if plan.device != "cpu":
        kwargs["device_map"] = {"": plan.device}
    model_class: Callable[..., Any]
    if model_type == "qwen2_5_vl":
        from transformers import Qwen2_5_VLForConditionalGeneration

        model_class = Qwen2_5_VLForConditionalGeneration.from_pretrained
    else:
        from transformers import AutoModelForImageTextToText

        model_class = AutoModelForImageTextToText.from_pretrained
    model = model_class(str(folder), **kwargs)
    model.eval()
    return model


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    ids.add(getattr(tokenizer, "eos_token_id", None))
    return frozenset(i for i in ids if isinstance(i, int))


def _prompt_opens_thinking(prompt: str) -> bool:
    """Whether the chat template left the assistant turn inside an open ``<think>``."""
    turn = prompt.rfind("<|im_start|>")
    opening = prompt.rfind(THINK_OPEN)
    return opening > turn and opening > prompt.rfind(THINK_CLOSE)
