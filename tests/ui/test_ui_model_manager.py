"""The model manager: state, device and memory, load/unload and download, driven by the
real engine on the tiny checkpoint (or on an empty Hugging Face cache)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtWidgets import QGroupBox
from pytestqt.qtbot import QtBot

from ophthai_desktop.core.inference import devices
from ophthai_desktop.core.inference import engine as engine_module
from ophthai_desktop.core.inference.engine import EngineStatus, ModelState
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.ui.controllers.analysis import model_problem
from ophthai_desktop.ui.session import GuiSession, model_lines
from ophthai_desktop.ui.views.model_manager import ModelManagerDialog
from tests.conftest import make_settings
from tests.support.images import png_bytes
from tests.ui.conftest import Maker, open_patient

#: Loading the tiny checkpoint imports torch and transformers the first time.
LOAD_TIMEOUT_MS = 60_000


def _open(qtbot: QtBot, gui: GuiSession) -> ModelManagerDialog:
    gui.window.model_manager_action.trigger()
    dialog = gui.model_manager.dialog
    assert dialog is not None
    qtbot.waitExposed(dialog)
    # The device and memory preview arrives from the task pool.
    qtbot.waitUntil(lambda: gui.model_manager.preview is not None, timeout=LOAD_TIMEOUT_MS)
    return dialog


@pytest.fixture
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_the_ai_menu_offers_the_model_actions(gui: GuiSession) -> None:
    ai_menu = next(a.menu() for a in gui.window.menuBar().actions() if a.text() == "&AI")
    texts = [a.text().replace("&", "") for a in ai_menu.actions() if not a.isSeparator()]
    assert texts == [
        "Analyse",
        "Load model",
        "Unload model",
        "Check model files again",
        "Model manager…",
    ]


def test_a_broken_model_note_points_to_the_menu_that_exists(gui: GuiSession) -> None:
    status = EngineStatus(
        state=ModelState.ERROR,
        message="",
        model_id="OctoMed/OctoMed-7B",
        model_source="/models/octomed",
        error="Loading failed: line 1 column 0",
    )
    note = model_problem(status)
    assert note is not None
    assert "line 1 column 0. Fix it (AI ▸ Check model files again)" in note
    menu, _sep, action = note.partition("(")[2].partition(")")[0].partition(" ▸ ")
    titles = {a.text().replace("&", ""): a.menu() for a in gui.window.menuBar().actions()}
    assert action in [a.text().replace("&", "") for a in titles[menu].actions()]


def test_the_generation_settings_say_where_to_change_them(qtbot: QtBot, gui: GuiSession) -> None:
    """The box said "set in .env or OPHTHAI_* variables"; Tools ▸ Settings… edits them."""
    dialog = _open(qtbot, gui)
    title = dialog.findChild(QGroupBox, "generationBox").title()
    menu, _sep, action = title.partition("change in ")[2].rstrip(")").partition(" ▸ ")
    titles = {a.text().replace("&", ""): a.menu() for a in gui.window.menuBar().actions()}
    found = [a for a in titles[menu].actions() if a.text().replace("&", "") == action]
    assert found, title
    found[0].trigger()
    settings = gui.settings_controller.dialog
    assert settings is not None and settings.isVisible()
    assert settings.max_new_tokens.isEnabled() and settings.thinking_budget.isEnabled()
    assert settings.max_pixels.isEnabled()
    settings.close()


def test_the_memory_estimate_says_it_is_being_worked_out(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path
) -> None:
    """The first check imports torch (~9 s on a slow machine); it showed 'unknown ·
    unknown free' meanwhile."""
    gui = make_gui(model_path=tiny_checkpoint, device="cpu")
    gui.window.model_manager_action.trigger()  # the check's answer comes from a pool thread
    dialog = gui.model_manager.dialog
    assert dialog is not None
    assert dialog.estimate.text().startswith("checking the device and free memory")
    qtbot.waitUntil(lambda: gui.model_manager.preview is not None, timeout=LOAD_TIMEOUT_MS)
    qtbot.waitUntil(lambda: dialog.estimate.text().startswith("about "))


def test_a_missing_model_shows_how_to_install_it(
    qtbot: QtBot, make_gui: Maker, empty_hub_cache: Path
) -> None:
    gui = make_gui(model_path=None)
    dialog = _open(qtbot, gui)
    assert dialog.state.text() == "Not installed"
    assert dialog.source.text() == "OctoMed/OctoMed-7B"
    assert "not in the Hugging Face cache" in dialog.message.text()
    assert "AI ▸ Model manager…" in dialog.message.text()  # the Download button below
    assert dialog.download_button.isEnabled()
    assert not dialog.load_button.isEnabled()
    assert not dialog.unload_button.isEnabled()
    assert dialog.used.text() == "not loaded"
    assert dialog.max_new_tokens.text() == "1,024 tokens"
    assert dialog.thinking_budget.text() == "768 tokens"
    assert dialog.max_pixels.text().startswith("262,144")


def test_load_shows_memory_in_use_and_unload_frees_it(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path
) -> None:
    gui = make_gui(model_path=tiny_checkpoint, device="cpu")
    dialog = _open(qtbot, gui)
    assert dialog.state.text() == "Installed, not loaded"
    assert str(tiny_checkpoint) in dialog.source.text()
    assert dialog.device.text() == "cpu"
    assert dialog.precision.text() == "float32"
    # The estimate before loading, against available RAM.
    assert dialog.estimate.text().startswith("about ")
    assert " free" in dialog.estimate.text()
    assert not dialog.unload_button.isEnabled()

    preview = gui.model_manager.preview
    assert preview is not None

    dialog.load_button.click()
    qtbot.waitUntil(lambda: dialog.state.text() == "Ready", timeout=LOAD_TIMEOUT_MS)
    # The figure shown before the load is the one the load checked against free memory
    # (derived from the checkpoint's config, not the fallback tenth of the weights).
    assert preview.estimated_bytes == gui.application.engine.status().estimated_bytes
    assert dialog.used.text() != "not loaded"
    assert dialog.used.text().endswith("B")
    assert dialog.device.text() == "cpu"
    assert not dialog.load_button.isEnabled()
    assert gui.window.unload_model_action.isEnabled()

    dialog.unload_button.click()
    qtbot.waitUntil(lambda: dialog.state.text() == "Installed, not loaded", timeout=20_000)
    assert dialog.used.text() == "not loaded"
    assert dialog.load_button.isEnabled()


def test_a_loaded_model_s_need_is_not_weighed_against_what_it_left_free(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loaded, "Memory needed" weighed the model's need against the memory free once it
    had loaded (its own share taken): "about 20 MB · 10 MB free — not enough memory", in
    red, beside a model at work. Opened while loaded, the figure free was the loaded
    one's still after the unload, and said again that the model did not fit."""
    free = {"bytes": 10**12}  # the machine's free memory, as the probe reports it
    monkeypatch.setattr(devices, "free_memory_bytes", lambda _device: free["bytes"])
    load_model = engine_module._load_model

    def load_taking_memory(*args: object, **kwargs: object) -> object:
        model = load_model(*args, **kwargs)
        estimate = gui.application.engine.status().estimated_bytes
        assert estimate is not None
        free["bytes"] = estimate // 2  # what the loaded model left
        return model

    monkeypatch.setattr(engine_module, "_load_model", load_taking_memory)
    gui = make_gui(model_path=tiny_checkpoint, device="cpu")
    dialog = _open(qtbot, gui)
    qtbot.waitUntil(lambda: dialog.estimate.text().startswith("about "))
    assert "not enough memory" not in dialog.estimate.text()

    dialog.load_button.click()
    qtbot.waitUntil(lambda: dialog.state.text() == "Ready", timeout=LOAD_TIMEOUT_MS)
    assert dialog.used.text().endswith("B")
    assert "not enough memory" not in dialog.estimate.text()
    assert dialog.estimate.property("kind") != "error"
    dialog.close()

    dialog = _open(qtbot, gui)  # opened while loaded: the free memory measured low
    left = free["bytes"]
    qtbot.waitUntil(lambda: getattr(gui.model_manager.preview, "free_bytes", None) == left)
    assert "not enough memory" not in dialog.estimate.text()
    dialog.unload_button.click()
    free["bytes"] = 10**12  # the unload gave it back
    qtbot.waitUntil(lambda: dialog.state.text() == "Installed, not loaded", timeout=20_000)
    qtbot.waitUntil(lambda: "1.0 TB free" in dialog.estimate.text())
    assert dialog.estimate.property("kind") != "error"


def test_a_load_that_cannot_work_shows_the_reason(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path
) -> None:
    gui = make_gui(model_path=tiny_checkpoint, device="cpu", quantization="4bit")
    dialog = _open(qtbot, gui)
    # Said before loading...
    assert "needs a CUDA GPU" in dialog.estimate.text()
    dialog.load_button.click()
    # ... and as the engine's error once loading failed.
    qtbot.waitUntil(lambda: dialog.state.text() == "Error", timeout=LOAD_TIMEOUT_MS)
    assert "OPHTHAI_QUANTIZATION=4bit needs a CUDA GPU" in dialog.message.text()
    # The status bar hears it from the event bus, the dialog from its own read: under
    # load one can come a moment after the other (it said "loading…" at that moment).
    qtbot.waitUntil(lambda: gui.window.status.model.text() == "Model: error")
    # "Check again" clears the error: the files are still there.
    dialog.check_button.click()
    qtbot.waitUntil(lambda: dialog.state.text() == "Installed, not loaded", timeout=20_000)


def test_a_queued_analysis_says_so_when_the_model_then_fails_to_load(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path
) -> None:
    gui = make_gui(model_path=tiny_checkpoint, device="cpu", quantization="4bit")
    patient = gui.application.patients.create_patient(
        {"name": "Waiting"}, actor=Actor("t", "gui"), image=NewImage(png_bytes())
    )
    open_patient(qtbot, gui, patient.id)
    gui.analysis_view.analyse.click()  # installed, not loaded: the job loads it first
    qtbot.waitUntil(lambda: "Queued for analysis" in gui.analysis_view.state.text())
    # The load fails on the worker (when it had not already by the time the job was
    # queued, the page said nothing until Analyse was pressed again).
    qtbot.waitUntil(
        lambda: "needs a CUDA GPU" in gui.analysis_view.notice.text(), timeout=LOAD_TIMEOUT_MS
    )
    assert "not available" in gui.analysis_view.state.text()


def test_a_download_that_cannot_reach_the_hub_fails_fast_with_the_reason(
    qtbot: QtBot, make_gui: Maker, empty_hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    gui = make_gui(model_path=None)
    dialog = _open(qtbot, gui)
    with qtbot.waitSignal(gui.model_manager.download_finished, timeout=30_000) as finished:
        dialog.download_button.click()
        assert dialog.cancel_button.isVisible()
        assert not dialog.download_button.isVisible()
    ok, message = finished.args
    assert ok is False and message
    assert dialog.state.text() == "Error"
    assert dialog.message.text() == message
    assert dialog.download_button.isVisible() and dialog.download_button.isEnabled()
    assert not dialog.cancel_button.isVisible()
    assert not dialog.progress.isVisible()


@pytest.mark.parametrize(("quantization", "shown"), [("none", "resolved when"), ("4bit", "4bit")])
def test_an_unresolved_precision_is_not_shown_as_the_quantization_setting(
    qtbot: QtBot, quantization: str, shown: str
) -> None:
    dialog = ModelManagerDialog()
    qtbot.addWidget(dialog)
    status = EngineStatus(
        state=ModelState.NOT_INSTALLED,
        message="not installed",
        model_id="OctoMed/OctoMed-7B",
        model_source="OctoMed/OctoMed-7B",
        quantization=quantization,
    )

    dialog.show_status(status, None, downloading=False)

    assert dialog.precision.text().startswith(shown)  # "none" was shown as a precision


def test_a_damaged_model_reads_damaged_in_the_manager_and_about(
    qtbot: QtBot, tmp_path: Path
) -> None:
    """The manager said "Not installed" (and About "not installed") for a folder with a
    shard missing."""
    dialog = ModelManagerDialog()
    qtbot.addWidget(dialog)
    message = "The model in /models/octomed is damaged: a shard is missing."
    status = EngineStatus(
        state=ModelState.NOT_INSTALLED,
        message=message,
        model_id="OctoMed/OctoMed-7B",
        model_source="/models/octomed",
        damaged=True,
    )

    dialog.show_status(status, None, downloading=False)

    assert dialog.state.text().startswith("Damaged")
    assert dialog.message.text() == message
    assert "not installed" not in dialog.estimate.text()
    assert dialog.download_button.isEnabled()  # downloading it again repairs it
    loaded, _ = model_lines(status, make_settings(tmp_path))
    assert loaded == "Model loaded: none (its files are damaged)"


def test_a_longer_message_after_the_dialog_opened_is_shown_whole(qtbot: QtBot) -> None:
    """Opened on a one-line message, the dialog kept its height when a load then failed
    with a three-line reason: the reason was cut to its first line ("The model in ... is
    of type 'llama', not a")."""
    dialog = ModelManagerDialog()
    qtbot.addWidget(dialog)
    status = EngineStatus(
        state=ModelState.INSTALLED,
        message="The model in /models/octomed is installed and not loaded.",
        model_id="OctoMed/OctoMed-7B",
        model_source="/models/octomed",
    )
    dialog.show_status(status, None, downloading=False)
    dialog.show()
    qtbot.waitExposed(dialog)
    reason = (
        "The model in /models/octomed is of type 'llama', not a Qwen2.5-VL model "
        "('qwen2_5_vl'), and no processor for it can be loaded here. Point "
        "OPHTHAI_MODEL_PATH to OctoMed-7B or another Qwen2.5-VL model."
    )
    failed = EngineStatus(
        state=ModelState.ERROR,
        message=reason,
        error=reason,
        model_id="OctoMed/OctoMed-7B",
        model_source="/models/octomed",
    )

    dialog.show_status(failed, None, downloading=False)

    label = dialog.message
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()))
    assert label.heightForWidth(label.width()) > 2 * label.fontMetrics().height()


def test_a_check_overtaken_by_a_later_one_does_not_show_its_failure(
    qtbot: QtBot, make_gui: Maker, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two checks at once (Check again, then a save): the first one's late failure
    replaced what the later check found."""
    from ophthai_desktop.core.inference import devices

    gui = make_gui(model_path=tiny_checkpoint, device="cpu")
    dialog = _open(qtbot, gui)
    first_asked, release = threading.Event(), threading.Event()
    real_free = devices.free_memory_bytes
    calls = []

    def free_memory_bytes(device: str) -> int | None:
        calls.append(device)
        if len(calls) == 1:  # the first check: held, then it fails
            first_asked.set()
            release.wait(30)
            raise RuntimeError("the device did not answer")
        return real_free(device)

    monkeypatch.setattr(devices, "free_memory_bytes", free_memory_bytes)
    gui.model_manager.check()
    assert first_asked.wait(30)
    before = gui.model_manager.preview
    gui.model_manager.check()  # the later one answers first
    qtbot.waitUntil(lambda: gui.model_manager.preview is not before)
    shown = dialog.message.text()
    release.set()
    qtbot.waitUntil(lambda: not gui.slow_tasks.busy)
    qtbot.wait(50)  # the failure's answer reaches the GUI thread
    assert dialog.message.text() == shown
    assert "RuntimeError" not in dialog.message.text()
