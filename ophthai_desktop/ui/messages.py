"""What a clinician reads when something goes wrong.

Core errors carry a message written for a person (and the field it is about); anything
else is a bug or an environment failure, told apart here.
"""

from __future__ import annotations

from collections.abc import Mapping

from ophthai_desktop.core.errors import (
    ChangeRolledBack,
    DatabaseFileGone,
    DatabaseUnavailable,
    NoRoom,
    OphthaiError,
    StorageError,
)

#: What the window says of a call the database did not answer; once it answers again the
#: banner saying it gives way to :data:`DATABASE_BACK`.
DATABASE_DOWN = (
    "The database does not answer (its server restarting or stopped, or its file locked). "
    "Try again in a moment."
)
DATABASE_BACK = "The database answers again."
#: How long the window says that the database answers again (where nothing is to be
#: done again).
DATABASE_BACK_SHOWN_MS = 5000

#: How core field names read in the GUI.
FIELD_LABELS = {
    "name": "Name",
    "age": "Age",
    "birth_date": "Birth date",
    "gender": "Sex",  # as the form, the patient page and the list call it
    "symptoms": "Symptoms",
    "history": "History",
    "status": "Status",
    "admission_date": "Admission date",
    "appointment_date": "Appointment",
    "clinician": "Clinician",
    "notes": "Notes",
    "image": "Image",
    "modality": "Modality",
    "laterality": "Laterality",
}


def once_database_answers(exc: BaseException, again: str) -> str | None:
    """What a lasting message about ``exc`` says once the database answers again:
    that it does, and ``again`` (what was not done and is to be done again); None where
    ``exc`` is not the database not answering (that message stays; a change the
    database rolled back is no outage, whose end would never come)."""
    if not isinstance(exc, DatabaseUnavailable) or isinstance(exc, ChangeRolledBack):
        return None
    return f"{DATABASE_BACK} {again}"


def sentence(message: str) -> str:
    """``message`` (a core error's, lower-case, no full stop) as a sentence."""
    return message[:1].upper() + message[1:] + "."


def field_label(field: str | None) -> str:
    """The GUI label of a core field name."""
    if not field:
        return ""
    return FIELD_LABELS.get(field, field.replace("_", " ").capitalize())


def describe(exc: BaseException, labels: Mapping[str, str] | None = None) -> str:
    """One or two sentences for the clinician about ``exc``; a core error about a field
    is led by that field's label (from ``labels``, a form's own, when given)."""
    if isinstance(exc, ChangeRolledBack):  # the database answers: not DATABASE_DOWN
        return sentence(exc.message)
    if isinstance(exc, DatabaseFileGone):  # no "try again": it never answers again
        return sentence(exc.message)
    if isinstance(exc, DatabaseUnavailable):
        return DATABASE_DOWN
    if isinstance(exc, NoRoom):  # stays so until space is freed: not "not available"
        return f"The disk is full: free space on it, then try again ({exc.message})."
    if isinstance(exc, StorageError):
        return f"The database or image store is not available: {exc.message}"
    if isinstance(exc, OphthaiError):
        message = exc.message or str(exc)
        label = (labels or {}).get(exc.field or "") or field_label(exc.field)
        if label and not message.lower().startswith(label.lower()):
            return f"{label}: {message}"
        return message[:1].upper() + message[1:]
    if isinstance(exc, OSError):
        return f"The file could not be read: {exc.strerror or exc}"
    return f"Something went wrong ({type(exc).__name__}: {exc}). The details are in the log."
