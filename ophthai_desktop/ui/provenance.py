"""How an analysis's provenance reads on screen and in Copy result: one labelled row per
fact (which model, prompt and device, how long it took, the generation settings), in
a fixed order, with units."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from ophthai_desktop.core.records import AnalysisRecord
from ophthai_desktop.ui.display import NOT_RECORDED, breakable, local_datetime, seconds

#: A row: its key (``generation.<setting>`` for a generation setting), label and text.
Row = tuple[str, str, str]

QUANTIZATION_NAMES = {"none": "none", "8bit": "8-bit", "4bit": "4-bit"}
FINISH_REASONS = {
    "eos": "the answer was complete",
    "length": "the token limit was reached",
    "cancelled": "cancelled",
}
#: Where a long value (a model's folder, a hash) may break on screen: after a folder's
#: separator, and every 16 characters in a part longer than that (a SHA-256 in four).
BREAK_AFTER = "/\\"
BREAK_EVERY = 16
#: Unit suffixes of setting names (the project names values with units so) and how the
#: unit is written after a value.
UNIT_SUFFIXES = {
    "s": "s",
    "ms": "ms",
    "px": "px",
    "pct": "%",
    "bytes": "bytes",
    "mb": "MB",
    "gb": "GB",
}


def on_screen(text: str) -> str:
    """A provenance value as a word-wrapped label shows it: a long path or hash breaks
    at its folders and in groups instead of widening the view. For the screen only:
    copies keep the value as it was recorded."""
    return breakable(text, after=BREAK_AFTER, every=BREAK_EVERY)


def plain(value: Any) -> str:
    """A value as a person reads it: numbers with thousands separators, yes or no,
    nothing recorded as a dash."""
    if value is None or value == "":
        return NOT_RECORDED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _with_unit(unit: str) -> Callable[[Any], str]:
    def written(value: Any) -> str:
        text = plain(value)
        return text if text == NOT_RECORDED or isinstance(value, bool) else f"{text} {unit}"

    return written


def _decoding(value: Any) -> str:
    return NOT_RECORDED if value is None else ("sampling" if value else "greedy")


def _finish(value: Any) -> str:
    return FINISH_REASONS.get(str(value), plain(value)) if value is not None else NOT_RECORDED


#: The generation settings the engine records, in the order shown, with their labels and
#: how their values are written. Others (a newer engine's) follow, named by
#: :func:`humanise`.
GENERATION_SETTINGS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "max_new_tokens": ("Max new tokens", _with_unit("tokens")),
    "thinking_budget": ("Thinking budget", _with_unit("tokens")),
    "do_sample": ("Decoding", _decoding),
    "temperature": ("Temperature", plain),
    "repetition_penalty": ("Repetition penalty", plain),
    "min_pixels": ("Image pixels, at least", _with_unit("pixels")),
    "max_pixels": ("Image pixels, at most", _with_unit("pixels")),
    "finish_reason": ("Generation ended", _finish),
    "thinking_forced_closed": ("Thinking cut short", plain),
}


def humanise(key: str) -> tuple[str, Callable[[Any], str]]:
    """A setting's label from its name (``warmup_steps`` → "Warmup steps",
    ``timeout_s`` → "Timeout" with values in seconds)."""
    words = [word for word in key.replace("-", "_").split("_") if word]
    writer: Callable[[Any], str] = plain
    if len(words) > 1 and words[-1].lower() in UNIT_SUFFIXES:
        writer = _with_unit(UNIT_SUFFIXES[words.pop().lower()])
    text = " ".join(words) or key
    return text[:1].upper() + text[1:], writer


def generation_keys(settings: Iterable[str]) -> list[str]:
    """The order generation settings are shown in: the known ones, then the others by
    name."""
    known = list(GENERATION_SETTINGS)
    return known + sorted(key for key in settings if key not in GENERATION_SETTINGS)


def _quantization(a: AnalysisRecord) -> str:
    return QUANTIZATION_NAMES.get(a.quantization or "", a.quantization or "unknown")


def _record(a: AnalysisRecord) -> str:
    parts = [f"#{a.id}"]
    if a.job_id is not None:
        parts.append(f"job {a.job_id}")
    if a.scan_id is not None:
        parts.append(f"scan {a.scan_id}")
    parts.append(local_datetime(a.created_at))
    return " · ".join(parts)


PARSE_STATUSES = {"parsed": "yes", "parse_failed": "no (parse failed)"}


def _parsed(a: AnalysisRecord) -> str:
    return PARSE_STATUSES.get(a.parse_status, a.parse_status)


Fact = tuple[str, str, Callable[[AnalysisRecord], str]]
#: What comes before the generation settings: key, label, text.
HEAD: tuple[Fact, ...] = (
    ("model", "Model", lambda a: a.model_id or NOT_RECORDED),
    ("revision", "Revision", lambda a: a.model_revision or "unknown"),
    ("prompt_version", "Prompt version", lambda a: a.prompt_version or "unknown"),
    ("device", "Device", lambda a: a.device or "unknown"),
    ("dtype", "Precision", lambda a: a.dtype or "unknown"),
    ("quantization", "Quantisation", _quantization),
    ("queue_wait_s", "Waited in the queue", lambda a: seconds(a.queue_wait_s)),
    ("time_to_first_token_s", "Time to first token", lambda a: seconds(a.time_to_first_token_s)),
    ("total_s", "Total time", lambda a: seconds(a.total_s)),
    ("prompt_tokens", "Prompt tokens", lambda a: plain(a.prompt_tokens)),
    ("completion_tokens", "Generated tokens", lambda a: plain(a.completion_tokens)),
)
#: What comes after them.
TAIL: tuple[Fact, ...] = (
    ("image_sha256", "Image (SHA-256)", lambda a: a.image_sha256 or "unknown"),
    ("analysis", "Analysis", _record),
    ("parse_status", "Answer read as a result", _parsed),
)


def provenance_titles(settings: Iterable[str] = ()) -> list[tuple[str, str]]:
    """The rows' keys and labels, in order, for an analysis with these generation
    settings (the known ones are always there)."""
    middle = [
        (f"generation.{key}", (GENERATION_SETTINGS.get(key) or humanise(key))[0])
        for key in generation_keys(settings)
    ]
    return (
        [(key, title) for key, title, _text in HEAD]
        + middle
        + [(key, title) for key, title, _text in TAIL]
    )


def provenance_rows(analysis: AnalysisRecord) -> list[Row]:
    """Every fact of ``analysis``'s provenance, labelled, in a stable order; the known
    settings are always there (a dash where the analysis did not record one)."""
    settings = analysis.generation_settings or {}
    rows: list[Row] = [(key, title, text(analysis)) for key, title, text in HEAD]
    for key in generation_keys(settings):
        title, written = GENERATION_SETTINGS.get(key) or humanise(key)
        rows.append((f"generation.{key}", title, written(settings.get(key))))
    rows += [(key, title, text(analysis)) for key, title, text in TAIL]
    return rows
