"""How an analysis's provenance reads: labels instead of the stored keys, units, a fixed
order, and settings a newer engine records still shown."""

from __future__ import annotations

import itertools
import unicodedata
from dataclasses import replace
from datetime import UTC, datetime

from pytestqt.qtbot import QtBot

from ophthai_desktop.core.records import AnalysisRecord
from ophthai_desktop.ui.display import ZERO_WIDTH_SPACE
from ophthai_desktop.ui.provenance import provenance_rows
from ophthai_desktop.ui.views.analysis import ProvenancePanel

#: What the engine records (core/inference/engine.py and JobService.complete).
ENGINE_SETTINGS = {
    "max_new_tokens": 1024,
    "thinking_budget": 768,
    "do_sample": False,
    "temperature": None,
    "repetition_penalty": 1.05,
    "max_pixels": 1003520,
    "min_pixels": 3136,
    "finish_reason": "length",
    "thinking_forced_closed": True,
}
ANALYSIS = AnalysisRecord(
    id=12,
    patient_id="pt-1",
    scan_id=3,
    job_id=7,
    image_sha256="ab" * 32,
    model_id="OctoMed/OctoMed-7B",
    model_revision="3f2a9c1d0e4b5a6978c1d2e3f4a5b6c7d8e9f0a1",
    prompt_version="octomed-oct-v3",
    generation_settings=ENGINE_SETTINGS,
    device="cuda:0",
    dtype="bfloat16",
    quantization="4bit",
    reasoning_text="",
    answer_text="{}",
    result={"classification": "Normal", "confidence": 90},
    parse_status="parsed",
    parse_error=None,
    status="preliminary",
    validated_by=None,
    validated_at=None,
    validation_notes=None,
    queue_wait_s=2.4,
    time_to_first_token_s=0.42,
    total_s=6.8,
    prompt_tokens=712,
    completion_tokens=1024,
    created_at=datetime(2026, 3, 9, 10, 30, tzinfo=UTC),
)


def _shown(analysis: AnalysisRecord) -> dict[str, str]:
    return {title: text for _key, title, text in provenance_rows(analysis)}


def test_provenance_is_labelled_with_units_not_keys() -> None:
    shown = _shown(ANALYSIS)
    assert not [title for title in shown if "_" in title], shown  # no stored keys
    assert shown["Prompt version"] == "octomed-oct-v3"
    assert shown["Device"] == "cuda:0"
    assert shown["Precision"] == "bfloat16"
    assert shown["Quantisation"] == "4-bit"
    assert shown["Waited in the queue"] == "2.4 s"
    assert shown["Time to first token"] == "420 ms"
    assert shown["Total time"] == "6.8 s"
    assert shown["Generated tokens"] == "1,024"
    assert shown["Max new tokens"] == "1,024 tokens"
    assert shown["Thinking budget"] == "768 tokens"
    assert shown["Decoding"] == "greedy"
    assert shown["Temperature"] == "—"
    assert shown["Image pixels, at most"] == "1,003,520 pixels"
    assert shown["Generation ended"] == "the token limit was reached"
    assert shown["Thinking cut short"] == "yes"
    assert shown["Image (SHA-256)"] == "ab" * 32
    assert shown["Answer read as a result"] == "yes"
    # Nothing the API's provenance has is left out (the analysis' own ids are there too).
    assert shown["Analysis"].startswith("#12 · job 7 · scan 3 · ")


def test_the_order_is_fixed_and_unknown_settings_follow_humanised() -> None:
    settings = {
        "warmup_steps": 3,
        "timeout_s": 2.5,
        **dict(reversed(list(ENGINE_SETTINGS.items()))),
    }
    newer = replace(ANALYSIS, generation_settings=settings)
    titles = [title for _key, title, _text in provenance_rows(newer)]
    assert titles == [
        "Model",
        "Revision",
        "Prompt version",
        "Device",
        "Precision",
        "Quantisation",
        "Waited in the queue",
        "Time to first token",
        "Total time",
        "Prompt tokens",
        "Generated tokens",
        "Max new tokens",
        "Thinking budget",
        "Decoding",
        "Temperature",
        "Repetition penalty",
        "Image pixels, at least",
        "Image pixels, at most",
        "Generation ended",
        "Thinking cut short",
        "Timeout",
        "Warmup steps",
        "Image (SHA-256)",
        "Analysis",
        "Answer read as a result",
    ]
    shown = _shown(newer)
    assert shown["Timeout"] == "2.5 s" and shown["Warmup steps"] == "3"
    # An older analysis that recorded fewer settings keeps the same rows.
    older = replace(ANALYSIS, generation_settings={"max_new_tokens": 64}, model_revision=None)
    assert [t for _k, t, _v in provenance_rows(older)] == [
        t
        for t in titles
        if t
        not in (
            "Timeout",
            "Warmup steps",
        )
    ]
    assert _shown(older)["Thinking budget"] == "—" and _shown(older)["Revision"] == "unknown"


def test_the_panel_shows_every_row_and_copies_the_values_whole(qtbot: QtBot) -> None:
    panel = ProvenancePanel()
    qtbot.addWidget(panel)
    newer = replace(ANALYSIS, generation_settings={**ENGINE_SETTINGS, "warmup_steps": 3})
    panel.show_analysis(newer)
    rows = provenance_rows(newer)
    titles = [
        panel.form.itemAt(row, panel.form.ItemRole.LabelRole).widget().text()
        for row in range(panel.form.rowCount())
    ]
    assert titles == [title for _key, title, _text in rows]
    # On screen the hash may wrap; the copy has it whole, as recorded.
    assert ZERO_WIDTH_SPACE in panel.values["image_sha256"].text()
    assert panel.text() == "\n".join(f"{title}: {text}" for _key, title, text in rows)
    assert "Image (SHA-256): " + "ab" * 32 in panel.text()

    panel.show_analysis(ANALYSIS)  # back to the engine's own settings
    assert "Warmup steps" not in panel.text()
    assert panel.form.rowCount() == len(provenance_rows(ANALYSIS))


def _on_screen(qtbot: QtBot, model_id: str) -> str:
    """The model row as the panel shows an analysis by ``model_id`` (a local folder)."""
    panel = ProvenancePanel()
    qtbot.addWidget(panel)
    panel.show_analysis(replace(ANALYSIS, model_id=model_id))
    assert model_id in panel.text()  # the copy has it as recorded
    shown = panel.values["model"].text()
    assert shown.replace(ZERO_WIDTH_SPACE, "") == model_id
    return shown


def test_a_model_folder_breaks_at_its_folders_not_inside_their_names(qtbot: QtBot) -> None:
    """A path broke after each "/" and, besides, every 16 characters counted from its
    start: a folder's name was cut in two where a line ended before its "/"."""
    folder = "/srv/ophthai/models/OctoMed-7B/snapshots/3f2a9c1d0e4b"
    assert _on_screen(qtbot, folder) == folder.replace("/", "/" + ZERO_WIDTH_SPACE)


def test_a_model_folder_keeps_each_accent_on_its_letter(qtbot: QtBot) -> None:
    """The path's groups of 16 were counted in code points: a letter and its accent
    written apart (as some file systems store names) were broken between, the accent drawn alone on
    a dotted circle on the next line. A long name breaks between letters as drawn."""
    folder = unicodedata.normalize("NFD", "/srv/réseau-rétinien-évalué-à-genève-été")
    shown = _on_screen(qtbot, folder)
    assert ZERO_WIDTH_SPACE in shown.split("/")[-1]  # the long name breaks too
    assert all(
        not unicodedata.combining(after)
        for before, after in itertools.pairwise(shown)
        if before == ZERO_WIDTH_SPACE
    )
