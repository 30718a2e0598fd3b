"""Domain vocabulary: the enumerations shared by storage, services and adapters, and
the rules they share (a patient's age from their birth date, how names sort)."""

from __future__ import annotations

import unicodedata
from datetime import date
from enum import IntEnum, StrEnum

#: Letters that carry no separable accent, sorted with their base letters (Øyvind among
#: the o's, Łukasz among the l's, Ærø among the a's) instead of after z.
_BASE_LETTERS = str.maketrans(
    {"æ": "ae", "ø": "o", "ł": "l", "đ": "d", "ð": "d", "þ": "th", "œ": "oe", "\u0131": "i"}
)


def text_sort_key(text: str) -> str:
    """What a text sorts by: case and accents ignored (``Émile`` with ``emile``, ``zoë``
    with ``zoe``, ``de la Cruz`` among the d's, ``Øyvind`` among the o's), the same on
    every database."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_BASE_LETTERS))
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def matches_search(search: str, name: str, record_id: str) -> bool:
    """Whether a patient list's ``search`` finds the patient: part of the name with case
    and accents ignored (through :func:`text_sort_key`: "jose" finds "José"), or part of
    the id with case ignored. ``PatientService.list_patients`` asks the database the
    same question through the stored key."""
    needle = text_sort_key(search)
    in_name = bool(needle) and needle in text_sort_key(name)
    return in_name or search.lower() in record_id.lower()


def local_today() -> date:
    """This computer's date now: the day ages are counted to."""
    return date.today()


def age_on(birth_date: date, today: date | None = None) -> int:
    """Whole years from ``birth_date`` to ``today`` (default: today, local)."""
    today = today or local_today()
    before_birthday = (today.month, today.day) < (birth_date.month, birth_date.day)
    return today.year - birth_date.year - int(before_birthday)


class PatientStatus(StrEnum):
    CRITICAL = "Critical"
    STABLE = "Stable"
    PENDING_ANALYSIS = "Pending Analysis"
    DISCHARGED = "Discharged"


class WorkflowStep(IntEnum):
    ANALYSIS = 1
    VALIDATION = 2
    SCHEDULING = 3
    COMPLETE = 4


class ValidationStatus(StrEnum):
    APPROVED = "approved"
    REJECTED = "rejected"


class NotificationType(StrEnum):
    INFO = "info"
    CRITICAL = "critical"
    SUCCESS = "success"


class Eye(StrEnum):
    """Laterality: oculus dexter (right) and oculus sinister (left)."""

    OD = "OD"
    OS = "OS"


class Laterality(StrEnum):
    OD = "OD"
    OS = "OS"
    OU = "OU"
    UNKNOWN = "unknown"


class Modality(StrEnum):
    OCT = "OCT"
    OCTA = "OCTA"
    FUNDUS = "fundus"
    UNKNOWN = "unknown"


class ScanSource(StrEnum):
    DROP = "drop"
    WATCH_FOLDER = "watch_folder"
    API = "api"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobPriority(IntEnum):
    """Which queued analysis the worker takes first: the higher priority, then the
    oldest. Each analysis takes the 7B model minutes, so after a watch-folder burst a
    clinician's own request would otherwise wait hours behind the device's files."""

    BACKGROUND = 0  # the watch folder's: nobody is waiting for it at a screen
    INTERACTIVE = 1  # asked for by someone: the window, an API client

    @property
    def label(self) -> str:
        """The name the API gives it: ``background`` or ``interactive``."""
        return self.name.lower()


class AnalysisStatus(StrEnum):
    """The clinician's verdict on an analysis; preliminary until validated."""

    PRELIMINARY = "preliminary"
    APPROVED = "approved"
    REJECTED = "rejected"


class ParseStatus(StrEnum):
    PARSED = "parsed"
    PARSE_FAILED = "parse_failed"
    CLIENT_SUPPLIED = "client_supplied"
