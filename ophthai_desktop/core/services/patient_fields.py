"""Validation of patient fields, shared by create and update.

Each rule names the field it checks, so the API's 422 and the GUI's form can point at it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from ophthai_desktop.core import domain
from ophthai_desktop.core.domain import PatientStatus, ValidationStatus, WorkflowStep, age_on
from ophthai_desktop.core.errors import InvalidInput

PATIENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$")
MAX_SYMPTOMS = 50
#: The longest name taken, in characters.
MAX_NAME_CHARS = 200


def _name(value: Any) -> str:
    text = str(value or "").strip()
    if not text:
        raise InvalidInput("the name is required", field="name")
    if len(text) > MAX_NAME_CHARS:
        raise InvalidInput(f"the name is longer than {MAX_NAME_CHARS} characters", field="name")
    return text


#: The oldest age accepted, given or derived from a birth date.
MAX_AGE = 130


def _age(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("the age must be a whole number of years", field="age")
    if not 0 <= value <= MAX_AGE:
        raise InvalidInput(f"the age must be between 0 and {MAX_AGE}", field="age")
    return value


def _birth_date(value: Any) -> date | None:
    if value is None:
        return None
    if not isinstance(value, date) or isinstance(value, datetime):
        raise InvalidInput("the birth date must be a date", field="birth_date")
    if value > domain.local_today():  # the day ages are counted to
        raise InvalidInput("the birth date is in the future", field="birth_date")
    if age_on(value) > MAX_AGE:  # the age it gives is held to the same bound
        raise InvalidInput(f"the birth date gives an age over {MAX_AGE} years", field="birth_date")
    return value


def _gender(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if len(text) > 32:
        raise InvalidInput("the gender is longer than 32 characters", field="gender")
    return text or None


def _symptoms(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [part for part in value.split(",")]
    if not isinstance(value, list | tuple):
        raise InvalidInput("symptoms must be a list of text", field="symptoms")
    items = [str(item).strip() for item in value if str(item).strip()]
    if len(items) > MAX_SYMPTOMS:
        raise InvalidInput(f"at most {MAX_SYMPTOMS} symptoms", field="symptoms")
    if any(len(item) > 500 for item in items):
        raise InvalidInput("a symptom is longer than 500 characters", field="symptoms")
    return items


def _history(value: Any) -> str:
    text = "" if value is None else str(value)
    if len(text) > 20_000:
        raise InvalidInput("the history is longer than 20,000 characters", field="history")
    return text


def _status(value: Any) -> str:
    try:
        return PatientStatus(value).value
    except ValueError as exc:
        allowed = ", ".join(s.value for s in PatientStatus)
        raise InvalidInput(f"status must be one of: {allowed}", field="status") from exc


def _workflow_step(value: Any) -> int:
    try:
        return int(WorkflowStep(value))
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "workflow step must be 1 (analysis), 2 (validation), 3 (scheduling) or 4 (complete)",
            field="workflow_step",
        ) from exc


def aware(value: Any, field: str) -> datetime:
    """A datetime with a zone; naive values are refused rather than guessed."""
    if not isinstance(value, datetime):
        raise InvalidInput("must be a date and time", field=field)
    if value.tzinfo is None:
        raise InvalidInput("the date and time needs a time zone (e.g. Z)", field=field)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+05:00 is before year 1 in UTC
        raise InvalidInput("the date and time is out of range", field=field) from exc


def _optional_datetime(field: str) -> Callable[[Any], datetime | None]:
    def check(value: Any) -> datetime | None:
        return None if value is None else aware(value, field)

    return check


def _admission_date(value: Any) -> datetime:
    if value is None:
        raise InvalidInput("the admission date cannot be empty", field="admission_date")
    return aware(value, "admission_date")


def _validation_status(value: Any) -> str | None:
    if value is None:
        return None
    try:
        return ValidationStatus(value).value
    except ValueError as exc:
        raise InvalidInput(
            "validation status must be approved or rejected", field="validation_status"
        ) from exc


RULES: dict[str, Callable[[Any], Any]] = {
    "name": _name,
    "age": _age,
    "birth_date": _birth_date,
    "gender": _gender,
    "symptoms": _symptoms,
    "history": _history,
    "status": _status,
    "workflow_step": _workflow_step,
    "admission_date": _admission_date,
    "appointment_date": _optional_datetime("appointment_date"),
    "validation_status": _validation_status,
}


def clean_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """Validate and normalise the given patient fields; unknown names are refused."""
    cleaned: dict[str, Any] = {}
    for key, value in fields.items():
        rule = RULES.get(key)
        if rule is None:
            raise InvalidInput(f"unknown patient field {key!r}", field=key)
        cleaned[key] = rule(value)
    return cleaned


def reconcile_age(values: dict[str, Any], birth_date: date | None) -> None:
    """Make ``values``' age follow the birth date the patient will have.

    ``birth_date`` is the one in ``values``, or else the one stored. With a birth date
    the age is derived from it (a given age must agree: a contradiction is refused,
    naming both fields); without one the age is what was given.
    """
    if birth_date is None:
        return
    derived = age_on(birth_date)
    given = values.get("age")
    if given is not None and given != derived:
        raise InvalidInput(
            f"the age {given} does not match the birth date {birth_date.isoformat()} "
            f"({derived} years old today); send one of them, or make them agree",
            field="age",
            also=("birth_date",),
        )
    if "birth_date" in values or "age" in values:
        values["age"] = derived


def check_patient_id(value: str) -> str:
    if not PATIENT_ID.fullmatch(value):
        raise InvalidInput("a patient id is 1-64 letters, digits, dots or dashes", field="id")
    return value


def check_patient_reference(patient_id: str | None) -> None:
    """A patient a record or a filter refers to (a notification's, a job filter's):
    ``None`` for none. An empty or blank id names no patient, and is refused as such
    rather than reported as a patient not found or taken as no patient."""
    if patient_id is not None and not patient_id.strip():
        raise InvalidInput(
            "must not be empty: send a patient's id, or leave the field out", field="patient_id"
        )
