"""Run the real desktop window on demo data and save screenshots of it.

Used by ``test_ui_xvfb.py`` under Xvfb (the xcb platform, real fonts) and by hand::

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m tests.ui.screenshot_app OUT

The window is the one ``ophthai`` opens (:class:`ophthai_desktop.desktop.Desktop`, with
the embedded API on a free port), over a data folder filled through the core services.
A stand-in engine writes a plausible reasoning and answer, so the analysis card is filled
without a model. Then the Settings dialog as it opens, and the model manager twice,
through real engines: the model not installed (an empty Hugging Face cache), and the
tests' tiny checkpoint loaded ("Ready"). Prints one JSON line: the files, what was shown
and the texts of each screenshot.

The run has a home folder of its own, a temporary one (``HOME``; the XDG and Hugging Face
folders unset), removed at the end: the data folder, the watch folder and the Hugging
Face cache are where a new install puts them, and nothing is read from or written to the
real user's folders. The screenshots show that home as :data:`SHOWN_HOME`, as the
clinician's own reads, not as a temporary folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs
from PIL import Image

from ophthai_desktop.core.inference import EngineStatus, GenerationResult, ModelState, ParsedAnswer
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.core.settings import APP_NAME
from tests.ui.demo_images import fundus, oct_bscan

if TYPE_CHECKING:
    from PySide6.QtWidgets import QWidget

REASONING = (
    "The B-scan is centred on the fovea. The foveal contour is lost and the central "
    "retina is thickened. There are several hyporeflective cystoid spaces in the inner "
    "nuclear and outer plexiform layers, temporal and nasal to the fovea. The RPE band "
    "is continuous; no subretinal fluid and no pigment epithelial detachment. The "
    "history of long-standing type 2 diabetes and blurred central vision fits "
    "centre-involving diabetic macular edema rather than post-surgical CME."
)
ANSWER = ParsedAnswer(
    classification="Diabetic Macular Edema",
    confidence=87.0,
    findings=(
        "Intraretinal cystoid spaces in the central macula",
        "Loss of the foveal contour with central thickening",
        "No subretinal fluid; RPE continuous",
    ),
    recommendation="Refer to the retina clinic within 2 weeks for anti-VEGF assessment.",
    explanation="Cystoid fluid in the INL and OPL with central thickening in a diabetic "
    "patient is consistent with centre-involving DME.",
)
PATIENTS = (
    (
        "Amelia Okafor",
        67,
        "Female",
        ["blurred vision", "distorted central vision"],
        "Type 2 diabetes for 14 years; hypertension.",
        "oct",
    ),
    ("Jonas Lindqvist", 54, "Male", ["floaters"], "Myopia -6 D; no surgery.", "fundus"),
    ("Priya Raman", 72, "Female", ["reduced night vision"], "Dry AMD OS under observation.", "oct"),
    ("Mateo Alvarez", 45, "Male", ["eye pain", "photophobia"], "No relevant history.", "fundus"),
    ("Hana Kobayashi", 61, "Female", ["halos around lights"], "Cataract surgery OD 2021.", "oct"),
    ("Samuel Adeyemi", 58, "Male", ["blurred vision"], "Type 1 diabetes; laser OD 2019.", "oct"),
    ("Elif Demir", 39, "Female", [], "Family history of glaucoma.", "fundus"),
    ("Noah Fischer", 81, "Male", ["reduced vision OS"], "Wet AMD OS, anti-VEGF 2023.", "oct"),
)
#: The window's size for the oculomics shot: large enough for its whole tab, with the
#: form beside the numbers (narrower, the form goes under them).
OCULOMICS_SHOT_SIZE = (1680, 1300)
#: The first patient's oculomics, per eye: days before today, then IOP (mmHg), C/D,
#: RNFL (µm) and vessel density (%). The right eye drifts past every threshold.
OCULOMICS = {
    "OD": (
        (980, 17.0, 0.42, 98.0, 49.0),
        (800, 18.5, 0.45, 95.0, 47.0),
        (610, 19.0, 0.48, 91.0, 45.0),
        (380, 21.5, 0.52, 86.0, 43.0),
        (200, 23.0, 0.56, 81.0, 41.0),
        (20, 24.5, 0.60, 77.0, 38.5),
    ),
    "OS": (
        (980, 15.0, 0.35, 101.0, 50.0),
        (610, 16.0, 0.36, 100.0, 49.5),
        (380, 16.5, 0.37, 99.0, 48.0),
        (20, 17.0, 0.38, 97.0, 47.0),
    ),
}


#: The home folder the screenshots show: the run's own home (a temporary folder) is shown
#: under this name, the clinician's of the demo.
SHOWN_HOME = "/home/arivera"
#: The environment that would take folders elsewhere than under ``HOME``.
HOME_OVERRIDES = (
    "XDG_DATA_HOME",
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_STATE_HOME",
    "HF_HOME",
    "HF_HUB_CACHE",
)


def _own_home(root: Path) -> Path:
    """Make ``root/home`` this process's home folder (``HOME``, the XDG and Hugging Face
    overrides unset), so that default folders are under it, as in a new install."""
    home = root / "home"
    home.mkdir()
    os.environ["HOME"] = str(home)
    for name in HOME_OVERRIDES:
        os.environ.pop(name, None)
    return home


def _as_installed(widget: QWidget, home: Path) -> None:
    """Show ``home`` in ``widget``'s texts as :data:`SHOWN_HOME` (its labels, fields,
    buttons and placeholders), as the screenshots show it."""
    from PySide6.QtWidgets import QAbstractButton, QLabel, QLineEdit, QWidget

    from ophthai_desktop.ui.views.settings_dialog import DefaultPathEdit

    for child in [widget, *widget.findChildren(QWidget)]:
        if isinstance(child, QLabel | QLineEdit | QAbstractButton) and str(home) in child.text():
            child.setText(child.text().replace(str(home), SHOWN_HOME))
            if isinstance(child, QLineEdit):
                child.setCursorPosition(0)  # its start in view, as a field filled shows it
        if isinstance(child, DefaultPathEdit):
            child.set_default_path(child.default_path.replace(str(home), SHOWN_HOME))
        elif isinstance(child, QLineEdit):
            child.setPlaceholderText(child.placeholderText().replace(str(home), SHOWN_HOME))


def _texts(widget: QWidget) -> list[str]:
    """The texts ``widget`` shows: its visible labels, fields, buttons and placeholders."""
    from PySide6.QtWidgets import QAbstractButton, QLabel, QLineEdit, QWidget

    texts = []
    for child in [widget, *widget.findChildren(QWidget)]:
        if not child.isVisible() or not isinstance(child, QLabel | QLineEdit | QAbstractButton):
            continue
        texts.append(child.text())
        if isinstance(child, QLineEdit) and not child.text():
            texts.append(child.placeholderText())
    return [text for text in texts if text]


class DemoEngine:
    """Stands in for OctoMed-7B: streams :data:`REASONING` and answers :data:`ANSWER`."""

    def status(self) -> EngineStatus:
        return EngineStatus(
            state=ModelState.READY,
            message="demo stand-in engine (no model weights)",
            model_id="OctoMed/OctoMed-7B (demo)",
            model_source="demo",
            device="cpu",
        )

    def confirm_installed(self) -> EngineStatus:
        return self.status()

    def refresh(self) -> EngineStatus:
        return self.status()

    def load(self) -> EngineStatus:
        return self.status()

    def unload(self) -> EngineStatus:
        return self.status()

    def generate(
        self,
        image: object,
        *,
        on_delta: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        question: str | None = None,
        modality: str | None = None,
    ) -> GenerationResult:
        answer = json.dumps(ANSWER.to_dict())
        text = f"<think>{REASONING}</think>{answer}"
        if on_delta is not None:
            for start in range(0, len(text), 12):
                on_delta(text[start : start + 12])
        return GenerationResult(
            raw_text=text,
            reasoning=REASONING,
            answer_text=answer,
            parsed=ANSWER,
            parse_error=None,
            prompt_version="octomed-oct-v3",
            model_id="OctoMed/OctoMed-7B (demo)",
            model_source="demo",
            revision=None,
            device="cpu",
            dtype="bfloat16",
            quantization="none",
            generation={"max_new_tokens": 1024, "thinking_budget": 768},
            prompt_tokens=712,
            completion_tokens=236,
            time_to_first_token_s=0.42,
            total_s=6.8,
        )


def _wait(app: object, predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)
    return True


def _settle(app: object, seconds: float) -> None:
    """Let layout, fonts and queued signals settle for ``seconds``."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.02)


def main(out_dir: Path) -> dict[str, object]:
    """Take the screenshots into ``out_dir``, in a home folder of the run's own."""
    root = Path(tempfile.mkdtemp(prefix="ophthai-shot-"))
    try:
        return _take(out_dir, _own_home(root))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _take(out_dir: Path, home: Path) -> dict[str, object]:
    from PySide6.QtGui import QGuiApplication

    from ophthai_desktop.bootstrap import build_application
    from ophthai_desktop.core.settings import Settings
    from ophthai_desktop.core.worker import InferenceWorker
    from ophthai_desktop.desktop import Desktop, qt_application

    logging.basicConfig(level=logging.WARNING)
    qt_app = qt_application()
    # Where a new install keeps its data (~/.local/share/OphthAI on Linux); given here as
    # the environment (OPHTHAI_DATA_DIR) may name another.
    data = Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))
    settings = Settings(
        data_dir=data,
        api_port=0,
        model_path=data / "no-model",
        user_name="Dr. A. Rivera",
        _env_file=None,  # type: ignore[call-arg]
    )
    application = build_application(settings)
    application.worker.stop()
    engine = DemoEngine()
    application.engine = engine  # type: ignore[assignment]
    application.worker = InferenceWorker(engine, application.jobs, application.bus)
    actor = Actor("Dr. A. Rivera", "gui")
    ids = []
    for i, (name, age, gender, symptoms, history, kind) in enumerate(PATIENTS):
        image = (
            NewImage(
                oct_bscan(i),
                source="drop",
                modality="OCT",
                laterality="OD",
                filename=f"macula_OD_{i}.png",
            )
            if kind == "oct"
            else NewImage(
                fundus(i),
                source="watch_folder",
                modality="fundus",
                laterality="OS",
                filename=f"fundus_OS_{i}.jpg",
            )
        )
        record = application.patients.create_patient(
            {"name": name, "age": age, "gender": gender, "symptoms": symptoms, "history": history},
            actor=actor,
            image=image,
        )
        ids.append(record.id)
    focus = ids[0]
    application.patients.attach_image(
        focus,
        NewImage(
            fundus(42), source="drop", modality="fundus", laterality="OD", filename="fundus_OD.jpg"
        ),
        actor=actor,
    )
    application.patients.attach_image(
        focus,
        NewImage(
            oct_bscan(7),
            source="drop",
            modality="OCT",
            laterality="OD",
            filename="macula_OD_followup.png",
        ),
        actor=actor,
    )
    for eye, rows in OCULOMICS.items():
        for days_ago, iop, cup_to_disc, rnfl, density in rows:
            application.oculomics.add_measurement(
                focus,
                eye=eye,
                measured_on=date.today() - timedelta(days=days_ago),
                iop_mmhg=iop,
                cup_to_disc_ratio=cup_to_disc,
                rnfl_thickness_um=rnfl,
                vessel_density_pct=density,
                actor=actor,
            )
    for pid in (ids[2], ids[5], focus):
        application.jobs.queue_patient_analysis(pid, actor=actor)
    application.notifications.create_notification(
        "Watch folder: 2 new fundus images filed", type="info", actor=actor
    )

    desktop = Desktop(application=application, tray=False)
    window = desktop.window
    desktop.start()
    session = desktop.session
    done = _wait(qt_app, lambda: application.jobs.list_jobs(state="done").total == 3)
    session.patients.open_patient(focus)
    view = session.analysis_view
    _wait(qt_app, lambda: view.card.isVisible() and session.scan_viewer.canvas.has_image)
    _wait(qt_app, lambda: desktop.api_url is not None and "API: http" in window.status.api.text())
    _wait(qt_app, lambda: session.patient_list.model.rowCount() == len(PATIENTS))
    session.patient_page.show_tab("analysis")
    window.raise_()
    window.activateWindow()
    _settle(qt_app, 1.0)  # fonts, icons and layout

    out_dir.mkdir(parents=True, exist_ok=True)
    shots: dict[str, Path] = {}
    texts: dict[str, list[str]] = {}

    def shoot(name: str, widget: QWidget) -> None:
        """Save ``widget`` as ``name``.png, the run's home shown as the clinician's."""
        _as_installed(widget, home)
        _settle(qt_app, 0.1)  # the layout of the texts changed
        shots[name] = out_dir / f"{name}.png"
        widget.grab().save(str(shots[name]))
        texts[name] = _texts(widget)

    shoot("main-window", window)
    screen = QGuiApplication.primaryScreen()
    shots["screen"] = out_dir / "screen.png"
    screen.grabWindow(0).save(str(shots["screen"]))
    session.patient_page.show_tab("scans")
    session.scan_viewer.canvas.zoom_by(1.6)
    _settle(qt_app, 0.4)
    shoot("scans", window)
    # The oculomics tab whole (charts, table, trends, form): the window made larger for
    # it, so that the tab needs no scrolling, then put back.
    session.patient_page.show_tab("oculomics")
    size = window.size()
    window.resize(*OCULOMICS_SHOT_SIZE)
    _settle(qt_app, 0.5)
    shoot("oculomics", window)
    window.resize(size)
    # The Settings dialog as Tools ▸ Settings… opens it, with the defaults where the demo
    # has its own values (the API on a free port, shown as 0; a model folder that is not
    # there): a reader sees what a new install shows.
    session.settings_controller.open_dialog()
    settings_dialog = session.settings_controller.dialog
    assert settings_dialog is not None
    defaults = {name: Settings.model_fields[name].default for name in ("api_port", "model_path")}
    settings_dialog.set_settings(settings.model_copy(update=defaults))
    _wait(qt_app, settings_dialog.isVisible, 10.0)
    _settle(qt_app, 0.5)
    shoot("settings", settings_dialog)
    settings_dialog.reject()
    # The model manager as a clinician first meets it: the model not downloaded yet (a
    # real engine for the Hub id, over the Hugging Face cache of the run's home, empty;
    # the demo engine is put back).
    from ophthai_desktop.core.inference.engine import InferenceEngine

    demo = application.engine
    application.engine = InferenceEngine(  # type: ignore[assignment]
        settings.model_copy(update={"model_path": None})
    )
    manager = session.model_manager.open()
    _wait(qt_app, lambda: "not installed" in manager.message.text(), 10.0)
    _wait(qt_app, lambda: "checking" not in manager.estimate.text(), 60.0)  # imports torch
    _settle(qt_app, 1.0)  # the device check and the layout
    shoot("model-manager", manager)
    shown = {"model-manager": manager.state.text()}
    manager.close()
    # The model manager once a model is loaded: the tests' tiny checkpoint (no GPU
    # here, so on the CPU), loaded through the real engine before the dialog opens.
    from tests.support.tiny_checkpoint import build_tiny_qwen25vl

    tiny = build_tiny_qwen25vl(home / "models" / "tiny-qwen25vl")
    loaded = InferenceEngine(settings.model_copy(update={"model_path": tiny, "device": "cpu"}))
    loaded.load()  # the tiny model loads in a fraction of a second
    application.engine = loaded  # type: ignore[assignment]
    manager = session.model_manager.open()
    _wait(qt_app, lambda: manager.state.text() == "Ready", 10.0)
    _wait(qt_app, lambda: manager.estimate.text().startswith("about "), 10.0)
    _settle(qt_app, 0.5)
    shoot("model-manager-ready", manager)
    shown["model-manager-ready"] = manager.state.text()
    manager.close()
    application.engine = demo
    loaded.unload()

    result = {
        "platform": qt_app.platformName(),
        "analyses_done": done,
        "api": window.status.api.text(),
        "model": window.status.model.text(),
        "card": view.card.classification.text(),
        "model_manager": shown,
        "files": {name: str(path) for name, path in shots.items()},
        "texts": texts,
        "sizes": {name: Image.open(path).size for name, path in shots.items()},
    }
    desktop.shutdown()
    return result


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))), flush=True)
