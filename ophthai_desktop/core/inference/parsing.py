"""Split the model's output into reasoning and answer, and read the answer's JSON.

The parser is tolerant of how language models wrap JSON (code fences, prose around it,
trailing commas, single quotes, Python literals, ``"85%"``) but never fills in a
classification or confidence the model did not give, nor chooses between two it gave:
without them, or where the answer gives two different ones, the answer is an
:class:`AnswerParseError`, and the caller stores the raw text as unparsed.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ophthai_desktop.core.errors import InvalidInput

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"

REQUIRED_FIELDS = ("classification", "confidence")
OPTIONAL_FIELDS = ("findings", "recommendation", "explanation")

#: Classifications that mean "nothing abnormal"; anything else counts as abnormal.
_NORMAL_RE = re.compile(
    r"^\s*(normal|healthy|unremarkable|within normal limits|"
    r"no\s+(significant\s+|apparent\s+|obvious\s+)?"
    r"(abnormalit(y|ies)|pathology|disease|lesions?|findings?)(\s+(detected|seen|found))?|"
    # A screening's "nothing of it", naming what was looked for: "No DR", "No signs of
    # diabetic retinopathy". Only these, and only alone: "No DME, but CNV" is a finding.
    r"no\s+((signs?|evidence)\s+of\s+)?(diabetic\s+retinopathy|dr|dme|"
    r"(diabetic\s+)?macular\s+o?edema|amd|age[-\s]related\s+macular\s+degeneration|"
    r"glaucoma(tous\s+(damage|changes))?|cnv|choroidal\s+neovasculari[sz]ation)"
    r"(\s+(detected|seen|found))?)"
    r"(\s+(retina|fundus|oct|octa|scan|study|exam|examination|macula|eye|findings?|appearance))?"
    r"\s*\.?\s*$",
    re.IGNORECASE,
)
#: Where a classification splits into clauses: "Normal (no DR)", "No DME - no CNV".
_CLAUSES_RE = re.compile(r"\s*[(),;:]\s*|\s+[-\u2013\u2014]\s+")


def says_normal(classification: str) -> bool:
    """Whether the classification means "nothing abnormal": every clause of it does
    ("Normal (no DR)"); one clause naming anything else ("No DME, but CNV") is a
    finding. A parenthesis that only gives the words before it again, abbreviated or
    spelt out ("No diabetic macular edema (DME)"), is not a clause of its own."""
    return _all_clauses_normal(classification) or _all_clauses_normal(_canonical(classification))


def _all_clauses_normal(classification: str) -> bool:
    clauses = [c for c in _CLAUSES_RE.split(classification) if c.strip()]
    return bool(clauses) and all(_NORMAL_RE.match(c) for c in clauses)


#: Classifications that say the image could not be read (the prompt asks for
#: "Ungradable", and for it where the image is not a retinal one): neither normal nor a
#: finding; the image is to be taken again. A reason may follow ("Ungradable (poor image
#: quality)", "Image ungradable due to media opacity"): see :data:`_IMAGE_PROBLEM_RE`.
_UNGRADABLE_RE = re.compile(
    r"^\s*((image|scan)\s+)?"
    r"(ungradable|not\s+gradable|cannot\s+be\s+graded|ungraded|unreadable|not\s+readable|"
    r"(poor|low|insufficient|inadequate)[-\s]+(image[-\s]+)?quality|"
    r"(image\s+)?quality\s+(too\s+)?(poor|low|insufficient|inadequate)|"
    r"non[-\s]?diagnostic|not\s+an?\s+(retinal|fundus|oct)\s+image|non[-\s]?retinal\s+image)"
    r"(\s+(image|scan|study))?"
    r"(?P<reason>(\s*([(:;,]|[-\u2013\u2014]\s)|\s(due\s+to|because|for)\s).*)?"
    r"\s*\.?\s*$",
    re.IGNORECASE,
)
#: A reason given after an "Ungradable" must be about the image, not a diagnosis:
#: "Ungradable - suspected macular hole" is a finding (an alarm), not a re-scan.
_IMAGE_PROBLEM_RE = re.compile(
    r"quality|blur|focus|opaci|cataract|artefact|artifact|motion|media|signal|expos|"
    r"too\s+(dark|bright)|resolution|noise|pupil|crop|visib|visuali[sz]|\bgrad|degrad|"
    r"readab|(retinal|fundus|oct)\s+image",
    re.IGNORECASE,
)
_CONFIDENCE_RE = re.compile(r"^\s*~?\s*(\d+(?:\.\d+)?|\.\d+)\s*(%|percent)?\s*$", re.IGNORECASE)
_RESULT_KEY_RE = re.compile("|".join(REQUIRED_FIELDS), re.IGNORECASE)
#: A classification written whole in text that is not JSON (cut off after it).
_UNREAD_CLASSIFICATION_RE = re.compile(
    r"""\bclassification\b["']?\s*:\s*(?:"([^"]*)"|'([^']*)')""", re.IGNORECASE
)
#: A classification names something: "..." or "?" is a placeholder, not a diagnosis.
_WORD_RE = re.compile(r"\w")
_FENCE_RE = re.compile(r"```[ \t]*(?:json|JSON|javascript|js)?[ \t]*\n?(.*?)(?:```|$)", re.DOTALL)


class AnswerParseError(InvalidInput):
    """The answer holds no valid result; ``message`` says why.

    Attributes:
        classifications: What the answer gave as its classification, each once, in
            order (:func:`parse_answer` sets them): an unreadable answer that names an
            abnormal diagnosis still raises the alarm.
    """

    def __init__(self, message: str, *, classifications: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.classifications = classifications


@dataclass(frozen=True)
class ParsedAnswer:
    """A validated answer.

    Attributes:
        classification: The model's diagnosis label.
        confidence: 0-100.
        findings: Observed findings, possibly empty.
        recommendation: Suggested next step, possibly empty.
        explanation: Why, possibly empty.
        missing: Optional fields the model left out (given here as empty).
    """

    classification: str
    confidence: float
    findings: tuple[str, ...] = ()
    recommendation: str = ""
    explanation: str = ""
    missing: tuple[str, ...] = field(default=())

    @property
    def is_abnormal(self) -> bool:
        """True unless the classification says normal / no abnormality, or that the
        image could not be graded (:attr:`is_ungradable`)."""
        return names_a_finding(self.classification)

    @property
    def is_ungradable(self) -> bool:
        """The model could not read the image ("Ungradable", as the prompt asks it to
        say): no finding to alarm on, and not normal either."""
        return is_ungradable(self.classification)

    def to_dict(self) -> dict[str, Any]:
        """The seed backend's result shape (snake_case keys)."""
        return {
            "classification": self.classification,
            "confidence": self.confidence,
            "findings": list(self.findings),
            "recommendation": self.recommendation,
            "explanation": self.explanation,
        }


def is_ungradable(classification: str) -> bool:
    """Whether ``classification`` says the image could not be graded ("Ungradable",
    "Poor image quality", "Ungradable (media opacity)"), rather than naming a finding."""
    match = _UNGRADABLE_RE.match(classification)
    if match is None:
        return False
    reason = match.group("reason")
    return reason is None or bool(_IMAGE_PROBLEM_RE.search(reason))


def names_a_finding(classification: str) -> bool:
    """Whether ``classification`` is an abnormal finding: it says neither normal nor
    that the image could not be graded."""
    return not (says_normal(classification) or is_ungradable(classification))


def split_output(text: str) -> tuple[str, str]:
    """Split generated text into ``(reasoning, answer)``, both stripped.

    ``<think>...</think>`` is the reasoning and what follows ``</think>`` the answer. A
    ``</think>`` without an opening tag (the template pre-filled ``<think>``) makes
    everything before it reasoning. An unclosed ``<think>`` (cancelled or cut off by the
    token cap) is all reasoning and no answer. Without tags it is all answer.

    Where the model wrote outside its reasoning and then ``<think>`` or ``</think>``
    again (an answer, then more thinking and another answer; a stray ``</think>``; the
    thinking budget's ``</think>``, then the model's own), the answer is everything from
    the first text it wrote outside its reasoning to the end, tags included, so that no
    part of it is filed away as reasoning: :func:`parse_answer` reads where in it the
    result lies. The reasoning is then every ``<think>`` part.
    """
    pieces = _phases(text, reasoning_first=_first_tag(text) == THINK_CLOSE)
    answers = [(start, end) for phase, start, end in pieces if phase == "answer"]
    spoken = [(start, end) for start, end in answers if text[start:end].strip()]
    reasoning = "\n\n".join(
        part
        for phase, start, end in pieces
        if phase == "reasoning" and (part := text[start:end].strip())
    )
    if not spoken:
        return reasoning, ""
    if len(spoken) == 1 and spoken[0] == answers[-1] and pieces[-1][0] == "answer":
        return reasoning, text[spoken[0][0] : spoken[0][1]].strip()  # the usual shape
    return reasoning, text[spoken[0][0] :].strip()


def _first_tag(text: str) -> str | None:
    found = [(i, tag) for tag in (THINK_OPEN, THINK_CLOSE) if (i := text.find(tag)) >= 0]
    return min(found)[1] if found else None


def _phases(text: str, *, reasoning_first: bool) -> list[tuple[str, int, int]]:
    """``(phase, start, end)`` of the spans of ``text`` between think tags, in order:
    ``"reasoning"`` after ``<think>`` (or from the start, with ``reasoning_first``),
    ``"answer"`` after ``</think>`` (or from the start)."""
    pieces: list[tuple[str, int, int]] = []
    phase = "reasoning" if reasoning_first else "answer"
    position = 0
    while True:
        found = [
            (i, tag) for tag in (THINK_OPEN, THINK_CLOSE) if (i := text.find(tag, position)) >= 0
        ]
        if not found:
            pieces.append((phase, position, len(text)))
            return pieces
        index, tag = min(found)
        pieces.append((phase, position, index))
        phase = "reasoning" if tag == THINK_OPEN else "answer"
        position = index + len(tag)


def parse_answer(answer_text: str) -> ParsedAnswer:
    """Find, repair and validate the JSON object in ``answer_text``.

    An answer that holds think tags (see :func:`split_output`) is read in the parts
    outside ``<think>...</think>``; a result in an earlier part is one of the answer's
    objects, as an echo is, and must agree with the rest, and the last part must give a
    result: after one, more thinking and none leaves the answer unknown.

    Raises:
        AnswerParseError: No JSON object, or one without a usable classification or
            confidence, or with fields of the wrong type, or objects (or a key given
            twice) that disagree on the classification or the confidence; or a result
            the model went on thinking after without giving another.
    """
    if not answer_text.strip():
        raise AnswerParseError("The model gave no answer after its reasoning.")
    pieces = _phases(answer_text, reasoning_first=False)
    parts = [
        _json_objects(answer_text[start:end]) for phase, start, end in pieces if phase == "answer"
    ]
    if pieces[-1][0] == "reasoning":  # it ends thinking: nothing after the last tag
        parts.append(([], ""))
    try:
        return _read_parts(parts)
    except AnswerParseError as exc:
        exc.classifications = _named(parts)
        raise


def _read_parts(parts: list[tuple[list[dict[str, Any]], str]]) -> ParsedAnswer:
    """The result of an answer's parts outside its think tags (see :func:`parse_answer`):
    each part's objects and the text of one that cannot be read."""
    giving = [
        index
        for index, (objects, unread) in enumerate(parts)
        if _answers(objects) or _RESULT_KEY_RE.search(unread)
    ]
    if giving and giving[-1] != len(parts) - 1:
        raise AnswerParseError(
            "After a result the model wrote <think> or </think> again, and no result "
            "followed: whether that result is its answer or a draft in its reasoning is "
            "not known. Read the model's answer."
        )
    if any(_RESULT_KEY_RE.search(unread) for _, unread in parts[:-1]):
        raise AnswerParseError(
            "Before it thought again the model wrote a classification or confidence that "
            "cannot be read (cut off, or not JSON), and a result after: whether the two "
            "agree is not known. Read the model's answer."
        )
    objects = [obj for part_objects, _ in parts for obj in part_objects]
    if not objects:
        raise AnswerParseError("The answer contains no complete JSON object.")
    # The answer is the last object that gives a classification or a confidence (an
    # example the model echoes comes first), where those before it agree with it. Only
    # where none gives either, the one with most of the result's keys is validated, to
    # say what is missing.
    answers = _answers(objects)
    if answers and _RESULT_KEY_RE.search(parts[-1][1]):
        raise AnswerParseError(
            "After its answer the model wrote another with a classification or confidence "
            "that cannot be read (cut off, or not JSON): whether the two agree is not "
            "known. Read the model's answer."
        )
    if answers:
        return _settle(answers)
    objects.sort(key=lambda obj: -sum(key in obj for key in REQUIRED_FIELDS + OPTIONAL_FIELDS))
    return _validate(objects[0])


def _named(parts: list[tuple[list[dict[str, Any]], str]]) -> tuple[str, ...]:
    """The classifications the parts give, each once (as :func:`_label_key` tells them
    apart), in order: those of the objects read, then any written whole in the text of
    one that cannot be read (an answer cut off at the token cap after its classification)."""
    named: dict[str, str] = {}
    for objects, unread in parts:
        labels = [label for obj in objects for label in _labels(obj.get("classification"))]
        for match in _UNREAD_CLASSIFICATION_RE.finditer(unread):
            labels.extend(_labels(match.group(1) if match.group(1) is not None else match.group(2)))
        for label in labels:
            named.setdefault(_label_key(label), label)
    return tuple(named.values())


def _answers(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects that give a classification or a confidence."""
    return [obj for obj in objects if any(key in obj for key in REQUIRED_FIELDS)]


def validate_result(
    data: Mapping[str, Any], *, stored: Mapping[str, Any] | None = None
) -> ParsedAnswer:
    """Validate a result given as a mapping (e.g. one a client sends back).

    Args:
        data: The result.
        stored: The result this server stored (:meth:`ParsedAnswer.to_dict`) for the
            analysis ``data`` names, if any. Where ``data`` gives every one of its values
            unchanged, it is read as stored: its confidence is a percentage already, so
            that 1 is 1% (the model's ``"1%"``), not an ambiguous answer refused.

    Raises:
        AnswerParseError: No usable classification or confidence, two different ones (a
            key given in two cases), or wrong types.
    """
    readings = _readings(_read_object(data.items()))
    if stored is not None and _gives_unchanged(readings, stored):
        return _validate(dict(stored), percentage=True)
    return _settle(readings)


def edits_stored(data: Mapping[str, Any], stored: Mapping[str, Any]) -> bool:
    """Whether ``data`` (a result a client sends back) gives any of ``stored``'s keys
    another value, its keys read as :func:`validate_result` reads them; a key it leaves
    out is no edit, nor a value written as the client first sent it (``"82%"`` for a
    stored 82, ``"drusen"`` for ``["drusen"]``); a key given twice (in two cases) is."""
    readings = _readings(_read_object(data.items()))
    return len(readings) > 1 or any(
        key in readings[0]
        and not _same(readings[0][key], value)
        and not _reads_as(key, readings[0][key], value)
        for key, value in stored.items()
    )


def _reads_as(key: str, sent: Any, stored: Any) -> bool:
    """Whether ``sent``, read as a result's ``key`` is, is the ``stored`` value."""
    readers: dict[str, Callable[[Any], Any]] = {
        "classification": lambda value: next(reversed(_labels(value)), None),
        "confidence": _confidence,
        "findings": lambda value: list(_findings(value)),
        "recommendation": lambda value: _text(value, key),
        "explanation": lambda value: _text(value, key),
    }
    reader = readers.get(key)
    if reader is None:
        return False
    try:
        return bool(reader(sent) == stored)
    except AnswerParseError:
        return False


def _gives_unchanged(readings: list[dict[str, Any]], stored: Mapping[str, Any]) -> bool:
    """Whether ``readings`` (one object's) are one, giving each of ``stored``'s values
    unchanged."""
    return len(readings) == 1 and all(
        key in readings[0] and _same(readings[0][key], value) for key, value in stored.items()
    )


def _same(sent: Any, stored: Any) -> bool:
    """A value sent back as stored (a number as a number: ``true`` is not 1)."""
    return isinstance(sent, bool) is isinstance(stored, bool) and sent == stored


def _settle(answers: list[dict[str, Any]]) -> ParsedAnswer:
    """The last of ``answers``, where all of them agree.

    The model is asked for one object. Where it writes more (an echo of its answer, a
    draft and its correction), they must agree on what the clinician acts on: the
    classification (it decides normal or abnormal, the patient's status and the alarm)
    and the confidence shown with it. Otherwise none is taken: the analysis is a parse
    failure that names the values, and the clinician reads the raw answer. The free-text
    fields are the last object's (an echo may shorten or leave them out).
    """
    labels: dict[str, str] = {}
    for answer in answers:
        for label in _labels(answer.get("classification")):
            labels.setdefault(_label_key(label), label)
    if len(labels) > 1:
        raise AnswerParseError(
            f"The answer gives {_count(labels)} different classifications: "
            f"{_listing(labels.values())}. Read the model's answer."
        )
    confidences: dict[float, None] = {}
    for answer in answers:
        if answer.get("confidence") is not None:
            try:
                confidences[_confidence(answer["confidence"])] = None
            except _AmbiguousConfidence:
                raise
            except AnswerParseError:  # no number: disagrees with none
                pass
    if len(confidences) > 1:
        label = next(iter(labels.values()), "the classification")
        raise AnswerParseError(
            f"The answer gives {_count(confidences)} different confidences for {label}: "
            f"{_listing(f'{value:g}' for value in confidences)}. Read the model's answer."
        )
    return _validate(answers[-1])


def _labels(value: Any) -> list[str]:
    """The classifications ``value`` gives (a string or a list of them), placeholders
    left out."""
    items = value if isinstance(value, list) else [value]
    labels = [" ".join(item.split()) for item in items if isinstance(item, str)]
    return [label for label in labels if _WORD_RE.search(label)]


#: Ophthalmic abbreviations and what they stand for, as written after :func:`_spelling`
#: (lower case, hyphens as spaces, American spelling). Only an abbreviation and its own
#: expansion agree (and the other names in :data:`_SYNONYMS`): "NPDR" is not "PDR",
#: "RVO" not "BRVO", "Wet AMD" not "AMD".
_ABBREVIATIONS = {
    "dme": ("diabetic macular edema",),
    "csme": ("clinically significant macular edema",),
    "cme": ("cystoid macular edema",),
    "dr": ("diabetic retinopathy",),
    "npdr": (
        "non proliferative diabetic retinopathy",
        "nonproliferative diabetic retinopathy",
    ),
    "pdr": ("proliferative diabetic retinopathy",),
    "amd": ("age related macular degeneration",),
    "cnv": ("choroidal neovascularization",),
    # Central serous retinopathy is the older name of the same disease.
    "csc": ("central serous chorioretinopathy", "central serous retinopathy"),
    "erm": ("epiretinal membrane",),
    "mh": ("macular hole",),
    "ftmh": ("full thickness macular hole",),
    "rvo": ("retinal vein occlusion",),
    "brvo": ("branch retinal vein occlusion",),
    "crvo": ("central retinal vein occlusion",),
    "vmt": ("vitreomacular traction", "vitreo macular traction"),
    "vma": ("vitreomacular adhesion", "vitreo macular adhesion"),
    "ped": ("pigment epithelial detachment", "pigment epithelium detachment"),
    "ga": ("geographic atrophy",),
}
#: Other abbreviations of the same names ("DMO" is the British one).
_ALIASES = {
    "dmo": "dme",
    "armd": "amd",
    "namd": "neovascular amd",
    "cscr": "csc",
    "csr": "csc",
}
_EXPANSION_RE = re.compile(
    r"(?<!\w)("
    + "|".join(
        re.escape(name)
        for name in sorted(
            (name for names in _ABBREVIATIONS.values() for name in names), key=len, reverse=True
        )
    )
    + r")(?!\w)"
)
_ABBREVIATION_OF = {name: short for short, names in _ABBREVIATIONS.items() for name in names}
_ALIAS_RE = re.compile(r"(?<!\w)(" + "|".join(_ALIASES) + r")(?!\w)")
#: Other names of one diagnosis, as :func:`_canonical` writes them once abbreviated: wet,
#: exudative and neovascular AMD are one disease, and so are dry, non-exudative and
#: non-neovascular AMD. Geographic atrophy ("ga") is the advanced form of dry AMD, a more
#: specific diagnosis, so it stays its own name (as "Mild NPDR" is not "NPDR").
_SYNONYMS = {
    "wet amd": "neovascular amd",
    "exudative amd": "neovascular amd",
    "dry amd": "non neovascular amd",
    "non exudative amd": "non neovascular amd",
    "nonexudative amd": "non neovascular amd",
    "nonneovascular amd": "non neovascular amd",
}
_SYNONYM_RE = re.compile(
    r"(?<!\w)("
    + "|".join(re.escape(name) for name in sorted(_SYNONYMS, key=len, reverse=True))
    + r")(?!\w)"
)
_PARENTHESIS_RE = re.compile(r" \(([^()]+)\)")
_WORD_CHAR_RE = re.compile(r"\w")
#: British spellings, and a hyphen between words, as :func:`_spelling` writes them.
_SPELLINGS = (
    (re.compile(r"oedema"), "edema"),
    (re.compile(r"haem"), "hem"),
    (re.compile(r"ischaem"), "ischem"),
    (re.compile(r"isation"), "ization"),
    (re.compile(r"(?<=\w)[-\u2010\u2011](?=\w)"), " "),
)


def _label_key(label: str) -> str:
    """What two classifications must share to agree: the same words ignoring case,
    spacing and a closing full stop ("Normal" and "normal."), an abbreviation or its
    expansion ("DME" and "Diabetic macular oedema", :data:`_ABBREVIATIONS`), British or
    American spelling, a hyphen or a space ("Age-related"); or both saying normal
    ("Normal" and "No abnormality detected": the same result for the patient and the
    alarm). Two classifications that agree never differ on normal, ungradable or a
    finding."""
    if says_normal(label):
        return "normal"
    kind = "ungradable" if is_ungradable(label) else "finding"
    return f"{kind}: {_canonical(label)}"


def _canonical(label: str) -> str:
    """``label`` as :func:`_spelling` writes it, each expansion and other abbreviation as
    its abbreviation (:data:`_ABBREVIATIONS`, :data:`_ALIASES`), each other name of a
    diagnosis as its one name (:data:`_SYNONYMS`), without a parenthesis that repeats the
    words before it."""
    words = _EXPANSION_RE.sub(lambda m: _ABBREVIATION_OF[m.group(1)], _spelling(label))
    words = _ALIAS_RE.sub(lambda m: _ALIASES[m.group(1)], words)
    words = _SYNONYM_RE.sub(lambda m: _SYNONYMS[m.group(1)], words)
    return _without_repeats(words)


def _without_repeats(text: str) -> str:
    """``text`` without a parenthesis that repeats the words before it: "dme (dme)", as
    "diabetic macular edema (DME)" reads once its expansion is abbreviated. Linear in
    the text's length (a client's classification may be long)."""
    kept: list[str] = []
    position = 0
    for match in _PARENTHESIS_RE.finditer(text):
        inner, start = match.group(1), match.start()
        before = start - len(inner)
        if (
            before >= position
            and text.startswith(inner, before)
            and not (before and _WORD_CHAR_RE.match(text[before - 1]))
        ):
            kept.append(text[position:start])
            position = match.end()
    kept.append(text[position:])
    return "".join(kept)


def _spelling(label: str) -> str:
    """``label`` in lower case, American spelling, with hyphens between words as spaces
    and without a closing full stop."""
    text = label.casefold()
    for pattern, replacement in _SPELLINGS:
        text = pattern.sub(replacement, text)
    return " ".join(text.split()).rstrip(" .")


def _count(values: Mapping[Any, Any]) -> str:
    return {2: "two", 3: "three"}.get(len(values), str(len(values)))


def _listing(values: Iterable[str]) -> str:
    items = list(values)
    return f"{', '.join(items[:-1])} and {items[-1]}"


class _Object(dict[str, Any]):
    """A JSON object with its keys normalised; ``earlier`` holds the values a key given
    more than once (``"classification"`` and ``"Classification"``) had before its last."""

    earlier: list[tuple[str, Any]]


def _read_object(pairs: Iterable[tuple[Any, Any]]) -> _Object:
    read = _Object()
    read.earlier = []
    for key, value in pairs:
        name = _normalize_key(key)
        if name in read and read[name] != value:
            read.earlier.append((name, read[name]))
        read[name] = value
    return read


def _readings(read: _Object) -> list[dict[str, Any]]:
    """The answers an object gives: itself, after one more for each earlier value of a
    key it repeats, so that a key given twice is checked as two objects are."""
    return [{**read, name: value} for name, value in read.earlier] + [dict(read)]


def _json_objects(text: str) -> tuple[list[dict[str, Any]], str]:
    """The JSON objects of ``text``, in the order they appear, each once (as its
    :func:`_readings`); and the text of an object after them that cannot be read (left
    open at the end as generation stopped, or no JSON), or ``""``.

    Code fences are read on their own as well as within the whole text, so that a stray
    brace or quote in the prose around them cannot hide the objects they hold.
    """
    sources = [(match.start(1), match.group(1)) for match in _FENCE_RE.finditer(text)]
    found: dict[int, _Object] = {}
    unread: tuple[int, str] = (-1, "")
    for offset, source in [*sources, (0, text)]:
        for start, candidate in _balanced_objects(source):
            if offset + start in found:
                continue
            loaded = None if candidate is None else _load(candidate)
            if isinstance(loaded, _Object):
                found[offset + start] = loaded
            elif isinstance(loaded, dict):  # a Python literal: its keys can clash in case
                found[offset + start] = _read_object(loaded.items())
            elif offset + start > unread[0]:
                unread = (offset + start, source[start:] if candidate is None else candidate)
    readings = [reading for start in sorted(found) for reading in _readings(found[start])]
    # Braces that cannot be read before the last object read are the prose's (that
    # object was read in its fence); after it, what the model wrote last.
    return readings, unread[1] if unread[0] > max(found, default=-1) else ""


def _normalize_key(key: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(key).strip().lower())


def reads_as_result_key(key: Any) -> bool:
    """Whether ``key`` is one of a result's own keys as :func:`validate_result` reads
    them (in any case: ``"Classification"`` is read, and counts as a second one)."""
    return _normalize_key(key) in REQUIRED_FIELDS + OPTIONAL_FIELDS


def _balanced_objects(text: str) -> Iterator[tuple[int, str | None]]:
    """Top-level ``{...}`` spans and where they start, skipping braces inside quoted
    strings; last, where one is left open at the end, its start and ``None``."""
    depth, start, quote, index = 0, -1, "", 0
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "\"'" and depth > 0:
            quote = char
        elif char == "{":
            if depth == 0:
                start = index
            depth += 1
        elif char == "}" and depth > 0:
            depth -= 1
            if depth == 0:
                yield start, text[start : index + 1]
        index += 1
    if depth > 0:
        yield start, None


def _load(candidate: str) -> Any:
    for attempt in (candidate, _repair(candidate)):
        try:
            return json.loads(attempt, strict=False, object_pairs_hook=_read_object)
        except ValueError:
            pass
    try:
        return ast.literal_eval(candidate)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None


def _repair(text: str) -> str:
    """Rewrite JSON-like text: single quotes, bare keys, trailing commas, Python literals."""
    out: list[str] = []
    index, length = 0, len(text)
    literals = {"True": "true", "False": "false", "None": "null"}
    while index < length:
        char = text[index]
        if char in "\"'":
            end = index + 1
            while end < length and text[end] != char:
                end += 2 if text[end] == "\\" else 1
            body = text[index + 1 : end]
            if char == "'":
                body = body.replace("\\'", "'").replace('"', '\\"')
            out.append(f'"{body}"')
            index = end + 1
        elif char == ",":
            following = index + 1
            while following < length and text[following].isspace():
                following += 1
            if following >= length or text[following] not in "}]":
                out.append(char)
            index += 1
        elif char.isalpha():
            end = index
            while end < length and (text[end].isalnum() or text[end] == "_"):
                end += 1
            word = text[index:end]
            following = end
            while following < length and text[following].isspace():
                following += 1
            if following < length and text[following] == ":":
                out.append(f'"{word}"')  # a bare key
            else:
                out.append(literals.get(word, word))
            index = end
        else:
            out.append(char)
            index += 1
    return "".join(out)


def _validate(data: dict[str, Any], *, percentage: bool = False) -> ParsedAnswer:
    """``data`` as a result; with ``percentage``, its confidence is one (see
    :func:`_confidence`)."""
    labels = _labels(data.get("classification"))
    if not labels:
        raise AnswerParseError("The answer has no classification.")
    if data.get("confidence") is None:
        raise AnswerParseError("The answer has no confidence.")
    confidence = _confidence(data["confidence"], percentage=percentage)
    missing = tuple(name for name in OPTIONAL_FIELDS if data.get(name) in (None, "", []))
    return ParsedAnswer(
        classification=labels[-1],
        confidence=confidence,
        findings=_findings(data.get("findings")),
        recommendation=_text(data.get("recommendation"), "recommendation"),
        explanation=_text(data.get("explanation"), "explanation"),
        missing=missing,
    )


def _confidence(value: Any, *, percentage: bool = False) -> float:
    """``value`` as a percentage, 0-100.

    The prompt asks for 0 to 100; a number between 0 and 1 without a percent sign is
    read as a fraction (0.85 is 85%: 0.85% for the model's own most likely diagnosis is
    no credible reading), however it is spelt (``0.85``, ``"0.85"``). 1 itself is 1% on
    the one scale and 100% on the other, and no spelling settles which (an integer is
    not more likely a percentage than a float): it is an error, not a guess. With
    ``percentage`` (a value this server stored, read so already) every number is one.
    """
    percent = percentage
    if isinstance(value, bool):
        raise AnswerParseError(f"The confidence {value!r} is not a number.")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int of hundreds of digits
            digits = len(str(abs(value)))
            raise AnswerParseError(
                f"The confidence, a number of {digits} digits, is outside 0-100."
            ) from None
    elif isinstance(value, str):
        match = _CONFIDENCE_RE.match(value)
        if not match:
            raise AnswerParseError(f"The confidence {value!r} is not a number.")
        number = float(match.group(1))
        percent = percent or bool(match.group(2))
    else:
        raise AnswerParseError(f"The confidence {value!r} is not a number.")
    if not math.isfinite(number):
        raise AnswerParseError(f"The confidence {value!r} is not a number.")
    if not percent and number == 1.0:
        raise _AmbiguousConfidence(
            f"The confidence {value!r} is ambiguous: 1% on the 0-100 scale, or 100% as a "
            "fraction of 1."
        )
    if not percent and 0.0 < number < 1.0:
        number *= 100.0  # given as a fraction
    if not 0.0 <= number <= 100.0:
        raise AnswerParseError(f"The confidence {value!r} is outside 0-100.")
    return round(number, 2)


class _AmbiguousConfidence(AnswerParseError):
    """A confidence that is a number, but on a scale that is not known: unlike one that
    is no number, it may disagree with the others."""


def _findings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise AnswerParseError("The findings are not a list of strings.")
    findings = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise AnswerParseError("The findings are not a list of strings.")
        text = " ".join(str(item).split())
        if text:
            findings.append(text)
    return tuple(findings)


def _text(value: Any, name: str) -> str:
    if value is None:
        return ""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        value = " ".join(value)
    if not isinstance(value, str):
        raise AnswerParseError(f"The {name} is not a string.")
    return value.strip()


class StreamPhases:
    """Labels streamed text deltas as ``"reasoning"`` or ``"answer"``.

    Feed each delta; get back ``(phase, text)`` pieces with the think tags removed. A tag
    split across deltas is held back until it is complete. Call :meth:`flush` at the end.

    Args:
        reasoning_first: The prompt pre-filled ``<think>``, so output starts as reasoning.
    """

    def __init__(self, *, reasoning_first: bool = False) -> None:
        self.phase = "reasoning" if reasoning_first else "answer"
        self._pending = ""

    def feed(self, delta: str) -> list[tuple[str, str]]:
        """Pieces of ``delta`` (with held-back text) that are now certain."""
        self._pending += delta
        pieces: list[tuple[str, str]] = []
        while "<" in self._pending:  # most deltas hold no tag: one scan says so
            found = [
                (i, tag) for tag in (THINK_OPEN, THINK_CLOSE) if (i := self._pending.find(tag)) >= 0
            ]
            if not found:
                break
            index, tag = min(found)
            if index:
                pieces.append((self.phase, self._pending[:index]))
            self.phase = "reasoning" if tag == THINK_OPEN else "answer"
            self._pending = self._pending[index + len(tag) :]
        keep = _partial_tag_length(self._pending)
        ready = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(ready) :]
        if ready:
            pieces.append((self.phase, ready))
        return pieces

    def flush(self) -> list[tuple[str, str]]:
        """Whatever is still held back."""
        rest, self._pending = self._pending, ""
        return [(self.phase, rest)] if rest else []


def _partial_tag_length(text: str) -> int:
    """Length of the longest end of ``text`` that could begin a think tag."""
    longest = min(len(text), len(THINK_CLOSE) - 1)
    if "<" not in text[-longest:]:
        return 0
    for size in range(longest, 0, -1):
        tail = text[-size:]
        if THINK_OPEN.startswith(tail) or THINK_CLOSE.startswith(tail):
            return size
    return 0
