"""How record values read on screen: dates in local time, steps, sizes, durations."""

from __future__ import annotations

import itertools
import re
import unicodedata
from datetime import date, datetime

from ophthai_desktop.core.domain import WorkflowStep

STEP_NAMES = {
    int(WorkflowStep.ANALYSIS): "Analysis",
    int(WorkflowStep.VALIDATION): "Validation",
    int(WorkflowStep.SCHEDULING): "Scheduling",
    int(WorkflowStep.COMPLETE): "Complete",
}

#: Runs of more characters than this without a space may break anywhere (see
#: :func:`breakable`); no word of a name or a history is that long.
LONGEST_UNBROKEN = 24
#: Where a line may break without a mark: the zero-width space.
ZERO_WIDTH_SPACE = "\u200b"
ZERO_WIDTH_JOINER = "\u200d"
_RUN = re.compile(rf"\S{{{LONGEST_UNBROKEN + 1},}}")

#: What the patient page and the patient list show for a value not recorded (an age, a
#: sex, a birth date) and for no appointment: the same in both.
NOT_RECORDED = "—"
NOT_SCHEDULED = "not scheduled"

LATERALITY_NAMES = {"OD": "OD (right)", "OS": "OS (left)", "OU": "OU (both)", "unknown": "eye ?"}
MODALITY_NAMES = {"OCT": "OCT", "OCTA": "OCTA", "fundus": "Fundus", "unknown": "unknown type"}


def local_datetime(value: datetime | None) -> str:
    """``2026-05-09 14:03`` in the machine's zone; empty for None."""
    if value is None:
        return ""
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


def local_date(value: datetime | date | None) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        value = value.astimezone().date()
    return value.isoformat()


def step_name(step: int) -> str:
    return STEP_NAMES.get(step, str(step))


def scan_label(modality: str, laterality: str) -> str:
    """``OCT · OD (right)``."""
    return (
        f"{MODALITY_NAMES.get(modality, modality)} · {LATERALITY_NAMES.get(laterality, laterality)}"
    )


def seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def size(num_bytes: int) -> str:
    if num_bytes < 1024:
        return f"{num_bytes} B"
    if num_bytes < 1024 * 1024:
        return f"{num_bytes / 1024:.0f} KB"
    return f"{num_bytes / (1024 * 1024):.1f} MB"


def breakable(
    text: str, *, after: str = "", every: int = 1, longest: int = LONGEST_UNBROKEN
) -> str:
    """``text`` with zero-width spaces in each run longer than ``longest`` (by default
    :data:`LONGEST_UNBROKEN`) without a space, for a word-wrapped label: Qt wraps it
    between words only, so a name or a history typed without spaces made the label as
    wide as the whole run, and the window wider than the screen. Text with shorter runs
    is returned as it is.

    A run may break after each of the characters in ``after`` (a path's separators)
    and, once ``every`` characters as drawn went by without a break, before the next:
    by default between any two (a name, a history); a path with ``after="/\\"`` at its
    folders, a hash in groups. Never inside a character as drawn (see :func:`_joins`).
    """

    def split(match: re.Match[str]) -> str:
        run = match.group()
        pieces = [run[0]]
        unbroken = 1  # characters as drawn since the last break
        for before, char in itertools.pairwise(run):
            if not _joins(before, char):
                if before in after or unbroken >= every:
                    pieces.append(ZERO_WIDTH_SPACE)
                    unbroken = 0
                unbroken += 1
            pieces.append(char)
        return "".join(pieces)

    runs = _RUN if longest == LONGEST_UNBROKEN else re.compile(rf"\S{{{longest + 1},}}")
    return runs.sub(split, text)


def _joins(before: str, char: str) -> bool:
    """Whether ``char`` belongs to the character ``before`` it on screen, so that no
    break goes between them: a mark of any kind (a Thai or Devanagari vowel sign is one
    of combining class 0, and a break before it drew it on a dotted circle; an emoji's
    variation selector), an emoji's skin tone, or either side of a zero-width joiner."""
    return (
        unicodedata.category(char).startswith("M")
        or ZERO_WIDTH_JOINER in (before, char)
        or "\U0001f3fb" <= char <= "\U0001f3ff"
    )
