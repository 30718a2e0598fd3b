"""Request and response schemas of the REST API (DESIGN §4).

Responses use the seed's camelCase keys; requests accept camelCase and snake_case alike
and refuse unknown keys (422) rather than dropping them. The AI result inside
``aiAnalysis`` keeps the seed's snake_case keys.
"""

from __future__ import annotations

import json
import re
import types
import typing
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema

from ophthai_desktop.api.params import INTEGER_COLUMN_MAX
from ophthai_desktop.core.inference.parsing import (
    OPTIONAL_FIELDS,
    REQUIRED_FIELDS,
    reads_as_result_key,
)
from ophthai_desktop.core.services.patient_fields import PATIENT_ID

#: C0 control characters and DEL, less tab, line feed and carriage return.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")

PatientStatusName = Literal["Critical", "Stable", "Pending Analysis", "Discharged"]
NotificationTypeName = Literal["info", "critical", "success"]
ModalityName = Literal["OCT", "OCTA", "fundus", "unknown"]
LateralityName = Literal["OD", "OS", "OU", "unknown"]
JobStateName = Literal["queued", "running", "done", "failed", "cancelled"]


#: The words of a field's name a title spells otherwise than with a capital:
#: abbreviations, and units (the end of a name such as ``iop_mmhg``).
TITLE_WORDS = {
    "Ai": "AI",
    "Iop": "IOP",
    "Rnfl": "RNFL",
    "Url": "URL",
    "Mmhg": "(mmHg)",
    "Um": "(µm)",
    "Pct": "(%)",
    "S": "(s)",  # seconds: "Total (s)", not "Total S"
}


def _title(name: str, _field: object) -> str:
    """A field's title in the OpenAPI document, from its snake_case name: "Poll Seconds",
    "IOP (mmHg)" (pydantic's own, from the camelCase key, ran the words together:
    "Pollseconds", "Iopmmhg")."""
    return " ".join(TITLE_WORDS.get(word, word) for word in name.replace("_", " ").title().split())


class PublicModel(BaseModel):
    """Serialised with camelCase keys."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        serialize_by_alias=True,
        field_title_generator=_title,
    )


def _number_field(annotation: Any) -> bool:
    """Whether a field takes numbers (int or float) and not booleans, through
    ``Annotated`` and unions (``Age | None``)."""
    kinds: set[Any] = set()

    def walk(kind: Any) -> None:
        origin = typing.get_origin(kind)
        if origin is Annotated:
            walk(typing.get_args(kind)[0])
            for meta in typing.get_args(kind)[1:]:
                if isinstance(meta, BeforeValidator):
                    kinds.add(BeforeValidator)
        elif origin in (typing.Union, types.UnionType):
            for member in typing.get_args(kind):
                walk(member)
        else:
            kinds.add(kind)

    walk(annotation)
    return bool(kinds & {int, float}) and not kinds & {bool, BeforeValidator}


def _date_field(annotation: Any) -> bool:
    """Whether a field takes a date (``date``, or ``date | None``), not a date and time."""
    kinds = set(typing.get_args(annotation)) or {annotation}
    return date in kinds and kinds <= {date, type(None)}


#: A number, or a text of digits: what pydantic reads as seconds (or milliseconds)
#: since 1970 where a date goes.
NUMBER_TEXT = re.compile(r"\s*[+-]?\d+(\.\d*)?\s*")

#: What a date field sent a number says (the 422's own words for it, as a date's).
DATE_NOT_A_NUMBER = "a date as YYYY-MM-DD (e.g. 1980-05-01), not a number"


def _boolean_field(annotation: Any) -> bool:
    """Whether a field takes only true or false (``bool``, or ``bool | None``)."""
    kinds = set(typing.get_args(annotation)) or {annotation}
    return bool in kinds and kinds <= {bool, type(None)}


class RequestModel(BaseModel):
    """Accepts camelCase or snake_case keys; anything else is a 422. Text may not hold
    control characters other than tab and line breaks (PostgreSQL cannot store a NUL,
    and none belongs in a clinical record)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        str_strip_whitespace=True,
        field_title_generator=_title,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _number_not_a_bool(cls, value: Any, info: ValidationInfo) -> Any:
        # JSON's true and false would otherwise be taken as 1 and 0 (pydantic's lax int
        # and float): {"iop": true} stored a pressure of 1 mmHg, {"scanId": true} chose
        # scan 1. A field with a check of its own (the age) says it in its own words.
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields[info.field_name]
            if _number_field(field.annotation) and not any(
                isinstance(m, BeforeValidator) for m in field.metadata
            ):
                raise ValueError("must be a number, not true or false")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _date_not_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic's lax date reads a number, or a text of digits, as seconds since 1970:
        # {"birthDate": 0} was stored as 1970-01-01, any other number a 422.
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if (
            (is_number or (isinstance(value, str) and NUMBER_TEXT.fullmatch(value)))
            and info.field_name is not None
            and _date_field(cls.model_fields[info.field_name].annotation)
        ):
            raise ValueError(DATE_NOT_A_NUMBER)
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _bool_not_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # The mirror: pydantic's lax bool reads 1, 0, "yes", "off"... as true or false,
        # so {"approved": 1} approved an analysis. JSON has true and false for that.
        if (
            value is not None
            and not isinstance(value, bool)
            and info.field_name is not None
            and _boolean_field(cls.model_fields[info.field_name].annotation)
        ):
            shown = json.dumps(value, default=str)
            shown = shown if len(shown) <= 40 else f"{shown[:37]}..."
            raise ValueError(f"must be true or false, not {shown}")
        return value

    @field_validator("*", mode="after")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        texts = value if isinstance(value, list | tuple) else [value]
        if any(isinstance(text, str) and CONTROL_CHARACTERS.search(text) for text in texts):
            raise ValueError("holds a control character (such as NUL); send plain text")
        return value


# Patients ----------------------------------------------------------------------------


class ScanPublic(PublicModel):
    id: int
    patient_id: str
    sha256: str
    media_type: str
    width: int
    height: int
    size_bytes: int
    modality: str
    laterality: str
    source: str
    acquired_at: datetime | None
    created_at: datetime
    image_url: str


class OculomicsHistoryPoint(PublicModel):
    date: str
    iop: float | None
    density: float | None


class OculomicsSummaryPublic(PublicModel):
    intraocular_pressure: float | None
    cup_to_disc_ratio: float | None
    rnfl_thickness: float | None
    vessel_density: float | None
    history: list[OculomicsHistoryPoint]


class PatientPublic(PublicModel):
    id: str
    name: str
    age: int | None
    birth_date: date | None
    gender: str | None
    admission_date: datetime
    symptoms: list[str]
    status: PatientStatusName
    image_url: str | None
    history: str
    oculomics: OculomicsSummaryPublic | None
    ai_analysis: dict[str, Any] | None
    validation_status: Literal["approved", "rejected"] | None
    validated_by: str | None
    validated_at: datetime | None
    validation_notes: str | None
    appointment_date: datetime | None
    workflow_step: int
    scan_count: int
    created_at: datetime
    updated_at: datetime


def _not_a_bool(value: Any) -> Any:
    # JSON's true would otherwise be taken as 1 (pydantic's lax int).
    if isinstance(value, bool):
        raise ValueError("the age must be a whole number of years, not true or false")
    return value


# The bounds before the validator: after it, pydantic writes them into the OpenAPI
# document as "ge"/"le" instead of JSON Schema's "minimum"/"maximum".
Age = Annotated[int, Field(ge=0, le=130), BeforeValidator(_not_a_bool)]


#: A new patient's id as the service takes it (:data:`PATIENT_ID`), or blank for one it
#: makes up, for the document: the service's check keeps its own message.
NEW_PATIENT_ID = f"^({PATIENT_ID.pattern.removeprefix('^').removesuffix('$')})?$"


class PatientCreate(RequestModel):
    id: str | None = Field(
        default=None,
        max_length=64,
        description="Letters, digits, dots and dashes, starting with a letter or digit; "
        "left out (or blank), the server makes one up (pt-...).",
        json_schema_extra={"pattern": NEW_PATIENT_ID},
    )
    name: str = Field(min_length=1, max_length=200)
    age: Age | None = None
    birth_date: date | None = None
    gender: str | None = Field(default=None, max_length=32)
    symptoms: list[str] | str | None = None
    history: str | None = Field(default=None, max_length=20_000)
    # Optional but never null: a patient always has a status and an admission date
    # (null is a 422), so the document does not offer null.
    status: PatientStatusName | SkipJsonSchema[None] = None
    admission_date: datetime | SkipJsonSchema[None] = None
    image_url: str | None = Field(
        default=None, description="A data:image/...;base64 URL; stored as a file."
    )
    modality: ModalityName = "unknown"
    laterality: LateralityName = "unknown"


#: Keys of :class:`PatientPublic` that only the server sets. A PATCH may carry them (the
#: seed's frontends send back the whole object they read), but they are never applied.
PATIENT_READ_ONLY = frozenset(
    {
        "id",
        "scan_count",
        "created_at",
        "updated_at",
        "oculomics",
        "ai_analysis",  # applied separately: a new result is stored as client-supplied
        "validated_by",
        "validated_at",
        "validation_notes",
    }
)
#: The description of a key a PATCH accepts and never applies (the 422s do not list it
#: among what the endpoint takes).
READ_ONLY = "Read-only: accepted so a whole patient object can be sent back, never applied."


#: What a PATCHed ``aiAnalysis`` reads: the result's own keys (in any case, as a model's
#: answer is read), and ``model`` and ``reasoning``, stored with a new result.
AI_RESULT_KEYS = (*REQUIRED_FIELDS, *OPTIONAL_FIELDS)
AI_RESULT_APPLIED = (*AI_RESULT_KEYS, "model", "reasoning")


def _any_case(word: str) -> str:
    return "".join(f"[{char.lower()}{char.upper()}]" for char in word)


def _known_ai_analysis_keys(value: Any) -> Any:
    """Refuse an ``aiAnalysis`` key the API neither reads nor writes (``severity``): it
    would be dropped without a word."""
    if not isinstance(value, dict):
        return value  # the route says it must be an object
    unknown = [
        str(key) for key in value if key not in AI_ANALYSIS_KEYS and not reads_as_result_key(key)
    ]
    if unknown:
        shown = ", ".join(unknown[:10]) + (f" and {len(unknown) - 10} more" if unknown[10:] else "")
        raise ValueError(
            f"an AI result has no such key: {shown} (it takes {', '.join(AI_RESULT_APPLIED)}; "
            "the other keys the API writes in one, such as analysis_id and status, are "
            "accepted when sent back and not applied)"
        )
    return value


def _ai_analysis_schema(schema: dict[str, Any]) -> None:
    """The document says which keys ``aiAnalysis`` takes, as the check above does."""
    result_keys = "|".join(map(_any_case, AI_RESULT_KEYS))
    schema["propertyNames"] = {
        "anyOf": [{"enum": sorted(AI_ANALYSIS_KEYS)}, {"pattern": rf"^\s*({result_keys})\s*$"}]
    }


class PatientUpdate(RequestModel):
    """The fields to change. Read-only keys of the patient object are accepted and not
    applied (``id``, if given, must be this patient's); any other key is a 422."""

    # Optional, but those a patient always has are never null (a 422): the document
    # offers null only for the fields that can be cleared.
    name: Annotated[str, Field(min_length=1, max_length=200)] | SkipJsonSchema[None] = None
    age: Age | None = None
    birth_date: date | None = None
    gender: str | None = Field(default=None, max_length=32)
    symptoms: list[str] | str | None = None
    history: str | None = Field(default=None, max_length=20_000)
    status: PatientStatusName | SkipJsonSchema[None] = None
    admission_date: datetime | SkipJsonSchema[None] = None
    appointment_date: datetime | None = None
    workflow_step: Annotated[int, Field(ge=1, le=4)] | SkipJsonSchema[None] = None
    validation_status: Literal["approved", "rejected"] | None = None
    image_url: str | None = Field(
        default=None,
        description="A data URL adds a scan; the patient's own imageUrl is accepted unchanged.",
    )
    modality: ModalityName = "unknown"
    laterality: LateralityName = "unknown"
    id: str | None = Field(default=None, max_length=64, description=READ_ONLY)
    scan_count: Any = Field(default=None, description=READ_ONLY)
    created_at: Any = Field(default=None, description=READ_ONLY)
    updated_at: Any = Field(default=None, description=READ_ONLY)
    oculomics: Any = Field(default=None, description=READ_ONLY)
    ai_analysis: Annotated[Any, AfterValidator(_known_ai_analysis_keys)] = Field(
        default=None,
        description=(
            "An AI result in the seed's shape; stored as a client-supplied analysis unless "
            "it is one of the patient's analyses sent back (same analysis_id, values "
            "unchanged). Its keys: classification, confidence, findings, recommendation, "
            "explanation, model, reasoning; the other keys the API writes in an AI result "
            "are accepted and not applied; any other key is a 422."
        ),
        json_schema_extra=_ai_analysis_schema,
    )
    validated_by: Any = Field(default=None, description=READ_ONLY)
    validated_at: Any = Field(default=None, description=READ_ONLY)
    validation_notes: Any = Field(default=None, description=READ_ONLY)


class ValidateRequest(RequestModel):
    approved: bool
    clinician: str | None = Field(
        default=None,
        max_length=200,
        validation_alias=AliasChoices("clinician", "validatedBy", "validated_by"),
    )
    notes: str | None = Field(default=None, max_length=10_000)


class ScheduleRequest(RequestModel):
    appointment_date: datetime


# Notifications -----------------------------------------------------------------------


class NotificationPublic(PublicModel):
    id: int
    patient_id: str | None
    message: str
    timestamp: datetime
    read: bool
    type: NotificationTypeName
    analysis_id: int | None = Field(
        description=(
            "The analysis that raised it (its alarm, an image that could not be graded, "
            "an answer that could not be read), as GET /api/analyses/{id} reads it; null "
            "for one a client or the watch folder made, and for those stored before "
            "notifications named their analysis."
        )
    )
    job_id: int | None = Field(
        description=(
            'The analysis job whose failure it tells ("The analysis for patient … failed '
            '(job #N): …"), as GET /api/jobs/{id} reads it; null for every other '
            "notification, a client's in the same words too, and for a failure stored "
            "before notifications named their job whose job its words do not name "
            "unambiguously."
        )
    )
    warning: bool = Field(
        description=(
            "Whether the app means it as a warning, which the seed's types lack (stored "
            "as info): an analysis that failed, an answer that could not be read, a file "
            "the watch folder did not take in. The window lists these as Warning; a "
            "client's notification is never one."
        )
    )


#: An optional patient id in a body: an empty one is refused (by the service, whose
#: message says to send an id or leave the field out), as the document says.
NOT_EMPTY: dict[str, Any] = {"minLength": 1}


class NotificationCreate(RequestModel):
    message: str = Field(min_length=1, max_length=2000)
    type: NotificationTypeName = "info"
    patient_id: str | None = Field(default=None, json_schema_extra=NOT_EMPTY)


class MarkRead(RequestModel):
    read: bool = True


class NoFields(RequestModel):
    """A body an endpoint accepts only empty (``{}``): any key is a 422 naming it."""


class UnreadCount(PublicModel):
    count: int


class Message(PublicModel):
    """What a change that returns no record did (a DELETE: the record and, for a
    patient, their scans, jobs and notifications)."""

    message: str


class CountMessage(Message):
    """What a change to many records did, and to how many."""

    count: int


#: The ``Location`` header of a response that created a record (or queued a job): the
#: path of the new record, where a GET reads it.
LOCATION_HEADER: dict[str, Any] = {
    "Location": {
        "description": "The path of the record created, where a GET reads it.",
        "schema": {"type": "string"},
    }
}

#: The ``X-Total-Count`` header of a list: how many records match, all pages together.
TOTAL_COUNT_HEADER: dict[str, Any] = {
    "X-Total-Count": {
        "description": "How many records match the filters, on every page together.",
        "schema": {"type": "integer"},
    }
}


# Oculomics ---------------------------------------------------------------------------


class OculomicsCreate(RequestModel):
    """A measurement. Each value has several names (the measurement's own, the seed's
    summary's, the chart's); the camelCase one comes first, so the schema and a 422 for
    a value left out use it, as for every other body."""

    eye: Literal["OD", "OS", "od", "os"]
    measured_on: date = Field(validation_alias=AliasChoices("measuredOn", "measured_on", "date"))
    iop_mmhg: float | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "iopMmhg", "iop_mmhg", "iop", "intraocularPressure", "intraocular_pressure"
        ),
    )
    cup_to_disc_ratio: float | None = Field(
        default=None, validation_alias=AliasChoices("cupToDiscRatio", "cup_to_disc_ratio")
    )
    rnfl_thickness_um: float | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "rnflThicknessUm", "rnfl_thickness_um", "rnflThickness", "rnfl_thickness"
        ),
    )
    vessel_density_pct: float | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "vesselDensityPct", "vessel_density_pct", "vesselDensity", "vessel_density", "density"
        ),
    )


class OculomicsMeasurementPublic(PublicModel):
    id: int
    patient_id: str
    eye: str
    measured_on: date
    iop_mmhg: float | None
    cup_to_disc_ratio: float | None
    rnfl_thickness_um: float | None
    vessel_density_pct: float | None
    flags: list[str]
    created_at: datetime


class MetricTrendPublic(PublicModel):
    eye: str
    metric: str
    unit: str
    points: int
    first_on: date
    last_on: date
    latest_value: float
    change_per_year: float | None
    latest_flag: str | None


class ReferenceRangePublic(PublicModel):
    metric: str
    label: str
    unit: str
    low: float | None
    high: float | None


class OculomicsPublic(PublicModel):
    patient_id: str
    measurements: dict[str, list[OculomicsMeasurementPublic]]
    trends: list[MetricTrendPublic]
    summary: OculomicsSummaryPublic | None
    reference_ranges: list[ReferenceRangePublic]


# Health ------------------------------------------------------------------------------


class HealthPublic(PublicModel):
    status: str
    version: str
    uptime_seconds: float
    database: str


# AI ----------------------------------------------------------------------------------


class AnalyzeRequest(RequestModel):
    """The seed's body: ``{"image_base64": ...}`` (bare base64 or a data URL)."""

    image_base64: str = Field(min_length=1)
    patient_id: str | None = Field(default=None, max_length=64, json_schema_extra=NOT_EMPTY)
    question: str | None = Field(default=None, max_length=2000)


class AnalyzePatientRequest(RequestModel):
    """What to analyse: by default the patient's newest scan, with the standard prompt."""

    scan_id: int | None = Field(
        default=None,
        ge=0,
        le=INTEGER_COLUMN_MAX,
        description="One of the patient's scans (GET .../scans); the newest by default.",
    )
    question: str | None = Field(
        default=None, max_length=2000, description="A question for the model about the image."
    )


class ProvenancePublic(BaseModel):
    """Where an analysis came from: model, prompt, settings, device and timings (keys in
    snake_case, as the analysis records them)."""

    model_config = ConfigDict(field_title_generator=_title)

    model: str
    model_revision: str | None
    prompt_version: str | None
    generation_settings: dict[str, Any]
    device: str | None
    dtype: str | None
    quantization: str | None
    image_sha256: str | None
    queue_wait_s: float | None
    time_to_first_token_s: float | None
    total_s: float | None
    prompt_tokens: int | None
    completion_tokens: int | None


class AnalysisPublic(BaseModel):
    """One stored analysis (``/api/analyses/{id}``): the AI result's keys when the answer
    parsed (else ``parse_error``), the reasoning, the raw answer and the provenance."""

    model_config = ConfigDict(extra="forbid")

    analysis_id: int
    status: Literal["preliminary", "approved", "rejected"]
    parse_status: str
    parse_error: str | None = Field(
        default=None, description="Why the answer did not parse (only then present)."
    )
    classification: str | None = None
    confidence: float | None = Field(default=None, description="0-100")
    findings: list[str] | SkipJsonSchema[None] = None
    recommendation: str | None = None
    explanation: str | None = None
    model: str
    model_revision: str | None
    prompt_version: str | None
    created_at: datetime
    validated_by: str | SkipJsonSchema[None] = None
    validated_at: datetime | SkipJsonSchema[None] = None
    reasoning: str = Field(description="The model's reasoning (its <think> text).")
    raw_answer: str = Field(description="The answer as the model wrote it.")
    provenance: ProvenancePublic


class AuditEventPublic(PublicModel):
    """Who did what to which record, when and from where."""

    model_config = ConfigDict(extra="forbid")

    id: int
    at: datetime
    actor: str
    origin: str = Field(description="gui or api (the API client's address is the actor)")
    action: str
    entity_type: str
    entity_id: str
    details: dict[str, Any]


class AnalysisResultPublic(BaseModel):
    """The result of ``/api/ai/analyze``: the seed's snake_case keys, then ours. An answer
    the model wrote that could not be parsed has no classification or confidence (null),
    and says why in ``parse_error``."""

    model_config = ConfigDict(extra="forbid")

    classification: str | None
    confidence: float | None = Field(description="0-100")
    findings: list[str]
    recommendation: str | None
    explanation: str | None
    analysis_id: int
    status: Literal["preliminary", "approved", "rejected"]
    parse_status: str
    parse_error: str | None = Field(
        default=None, description="Why the answer did not parse (only then present)."
    )
    model: str
    model_revision: str | None
    prompt_version: str | None
    created_at: datetime
    validated_by: str | SkipJsonSchema[None] = None
    validated_at: datetime | SkipJsonSchema[None] = None
    reasoning: str = Field(description="The model's reasoning (its <think> text).")
    raw_answer: str = Field(description="The answer as the model wrote it.")
    job_id: int
    patient_id: str | None
    provenance: ProvenancePublic


#: Every key the API writes in an AI result (a patient's ``aiAnalysis``,
#: ``/api/ai/analyze``, ``/api/analyses/{id}``): a client may send back what it read.
#: ``analysis_id`` tells one of the server's analyses sent back; the others it does not
#: read are accepted and not applied (:class:`PatientUpdate` checks against it).
AI_ANALYSIS_KEYS = frozenset(AnalysisResultPublic.model_fields) | frozenset(
    AnalysisPublic.model_fields
)


class ModelMemoryPublic(BaseModel):
    model_config = ConfigDict(extra="forbid")

    estimated_bytes: int | None = Field(description="What the model needs on its device.")
    free_bytes: int | None = Field(description="Free GPU memory (CUDA) or available RAM.")
    used_bytes: int | None = Field(description="What the loaded model holds.")


class QueuePublic(BaseModel):
    model_config = ConfigDict(extra="forbid")

    queued: int | None = Field(
        description="How many wait; null while the database does not answer."
    )
    running: int | None = Field(description="The id of the job being analysed.")


class AIHealthPublic(BaseModel):
    """The model's state, as ``/api/ai/health`` gives it (snake_case, as the seed)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["available", "unavailable", "loading", "not_installed"]
    state: str = Field(description="The engine's own state (ready, installed, loading, ...).")
    message: str
    model: str
    model_source: str
    revision: str | None
    device: str | None
    dtype: str | None
    quantization: str
    parameters: int | None
    memory: ModelMemoryPublic
    queue: QueuePublic
    worker_waiting: str | None = Field(
        description="Why the worker is not taking jobs. With jobs queued (or the queue "
        "unknown: the database not answering), as each queued job's waiting; with none, "
        "null where the model's state and message say it (not installed, damaged, a "
        "failed load)."
    )
    database: Literal["available", "unavailable"] = Field(
        description="unavailable while the database does not answer (queue.queued is null "
        "then); the model's state is answered all the same."
    )


class ModelCommandPublic(BaseModel):
    """The answer of ``/api/ai/load-model`` and ``/api/ai/unload-model``."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["success"]
    message: str
    device: str | None = Field(
        default=None, description="Where the model was loaded (load-model only)."
    )
    unloaded: bool | None = Field(
        default=None,
        description="unload-model only: whether a loaded model was freed (false: none was "
        "loaded, and nothing changed).",
    )


class JobPublic(PublicModel):
    """An analysis job of the persistent queue."""

    model_config = ConfigDict(extra="forbid")

    id: int
    kind: str
    state: JobStateName
    patient_id: str | None
    scan_id: int | None
    image_sha256: str | None
    question: str | None
    error: str | None = Field(description="Why it failed, once it has.")
    waiting: str | None = Field(
        default=None,
        description="For a queued job the worker is not taking: why (`model loading` while "
        "it loads; the model missing, unloaded or failed to load, and what makes it run). "
        "It stays queued and is never failed for it.",
    )
    attempts: int
    requested_by: str | None
    priority: Literal["interactive", "background"] = Field(
        description="Which queued job the worker takes first: every interactive one (asked "
        "for in the window or by an API client) before any background one (the watch "
        "folder's), the oldest first within each. Asking for an analysis the watch folder "
        "has queued makes it interactive."
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobDetailPublic(JobPublic):
    """A job with its analysis once it has one (the AI result with its reasoning)."""

    analysis: dict[str, Any] | None


# Errors ------------------------------------------------------------------------------


class ErrorItem(BaseModel):
    """One problem with a request."""

    model_config = ConfigDict(extra="forbid")

    loc: list[str | int] = Field(
        description="Where: body, query or path, then the field's name as sent."
    )
    field: str = Field(description="The field as the request spelled it ('' for the whole).")
    msg: str
    type: str


# Watch folder ------------------------------------------------------------------------


class WatchFolderPublic(PublicModel):
    """The watch folder's state: the ``watcher_state`` event's fields and words, and
    how it is set up."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        description="Whether the settings turn the watch folder on "
        "(OPHTHAI_WATCH_FOLDER_ENABLED); pause and resume are a 409 while it is off."
    )
    state: Literal["running", "paused", "stopped", "error"]
    message: str = Field(
        description="Why: the error (with when it is tried again), what a paused folder "
        "waits for, the fallback to polling, files waiting for the database; or ''."
    )
    folder: str = Field(description="The folder watched (or to be watched).")
    polling: bool = Field(
        description="Whether the polling observer runs now: set up so (usePolling), or the "
        "fallback where file events are unavailable; false while the folder is not watched "
        "(stopped, error, paused after failing to start)."
    )
    use_polling: bool = Field(
        description="Whether the settings ask for the polling observer "
        "(OPHTHAI_WATCH_USE_POLLING), whatever runs now."
    )
    poll_seconds: float = Field(description="The polling cadence, in seconds.")
    extensions: list[str] = Field(description="The file extensions taken in.")
    waiting: int | None = Field(
        description="Files noticed in the folder and not taken in yet (held while paused); "
        "null while it is not watched (stopped, error, or paused after failing to start)."
    )
    in_progress: int | None = Field(
        description="Files being taken in now; null while it is not watched."
    )
    ignored: int | None = Field(
        description="Files of an allowed extension left in the folder for their names "
        "(starting with '.', '~$', 'tmp_', 'tmp-', 'temp_' or 'temp-', not a patient id): "
        "hidden or temporary files, taken in once renamed; as the last two rescans found "
        "them. Null while it is not watched."
    )
    ignored_names: list[str] | None = Field(
        description="The first five of those files' names, sorted; null while it is not watched."
    )


class ErrorPublic(BaseModel):
    """The body of every error but a 422: ``message`` a sentence to show a person,
    ``detail`` the same sentence (as FastAPI clients expect)."""

    model_config = ConfigDict(extra="forbid")

    detail: str
    message: str
    field: str | SkipJsonSchema[None] = Field(
        default=None, description="The field at fault, as the request spelled it."
    )
    job_id: int | SkipJsonSchema[None] = Field(
        default=None, description="The analysis job concerned (poll /api/jobs/{id})."
    )


class ValidationErrorPublic(BaseModel):
    """The body of every 422, whichever layer refused the request: ``errors`` lists each
    problem; ``detail`` is that list for a request FastAPI's validation refused, else
    the message."""

    model_config = ConfigDict(extra="forbid")

    detail: str | list[ErrorItem]
    message: str
    field: str | SkipJsonSchema[None] = Field(
        default=None, description="The field at fault, as the request spelled it."
    )
    errors: list[ErrorItem]
