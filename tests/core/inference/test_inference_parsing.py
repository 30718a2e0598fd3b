"""Splitting reasoning from the answer, and reading the answer's JSON tolerantly."""

from __future__ import annotations

import json

import pytest

from ophthai_desktop.core.errors import InvalidInput
from ophthai_desktop.core.inference.parsing import (
    AnswerParseError,
    ParsedAnswer,
    StreamPhases,
    parse_answer,
    split_output,
)

ANSWER = (
    '{"classification": "Diabetic Macular Edema", "confidence": 85, '
    '"findings": ["Intraretinal cysts", "Subretinal fluid"], '
    '"recommendation": "Refer for anti-VEGF.", "explanation": "Fluid thickens the macula."}'
)


def test_split_with_think_tags() -> None:
    reasoning, answer = split_output(f"<think>\nCysts in the macula.\n</think>\n\n{ANSWER}")

    assert reasoning == "Cysts in the macula."
    assert answer == ANSWER


def test_split_with_prefilled_opening_tag() -> None:
    assert split_output(f"Cysts seen.</think>{ANSWER}") == ("Cysts seen.", ANSWER)


def test_split_without_think_is_all_answer() -> None:
    assert split_output(f"  {ANSWER}\n") == ("", ANSWER)


def test_split_unclosed_think_has_no_answer() -> None:
    assert split_output("<think>Looking at the layers and") == ("Looking at the layers and", "")


def test_parse_plain_json() -> None:
    parsed = parse_answer(ANSWER)

    assert parsed == ParsedAnswer(
        classification="Diabetic Macular Edema",
        confidence=85.0,
        findings=("Intraretinal cysts", "Subretinal fluid"),
        recommendation="Refer for anti-VEGF.",
        explanation="Fluid thickens the macula.",
    )
    assert parsed.is_abnormal
    assert parsed.to_dict() == {
        "classification": "Diabetic Macular Edema",
        "confidence": 85.0,
        "findings": ["Intraretinal cysts", "Subretinal fluid"],
        "recommendation": "Refer for anti-VEGF.",
        "explanation": "Fluid thickens the macula.",
    }


def test_parse_fenced_json_with_prose_around() -> None:
    text = f"Here is my assessment:\n```json\n{ANSWER}\n```\nLet me know if you need more."

    assert parse_answer(text).classification == "Diabetic Macular Edema"


#: What OctoMed writes when it drafts before it answers: a JSON example in its reasoning,
#: then after ``</think>`` a draft and the corrected final object (the prompt asks for the
#: one after the reasoning; the last is the one the model settled on).
DRAFT_THEN_FINAL = (
    '<think>The answer must look like {"classification": "...", "confidence": 0-100}. '
    "The foveal contour is preserved, but there is a dome-shaped detachment of the "
    "neurosensory retina with clear subretinal fluid and no intraretinal cysts.</think>\n"
    "Draft:\n```json\n"
    '{"classification": "Normal", "confidence": 40, "findings": [], '
    '"recommendation": "Routine follow-up.", "explanation": "First impression."}\n'
    "```\n"
    "On reflection the subretinal fluid rules out a normal scan. Final answer:\n"
    "```json\n"
    '{"classification": "Central Serous Chorioretinopathy", "confidence": 82, '
    '"findings": ["Subretinal fluid", "Serous detachment of the neurosensory retina"], '
    '"recommendation": "Review in 6 weeks; OCT angiography if it persists.", '
    '"explanation": "Subretinal fluid without cysts fits CSC."}\n'
    "```"
)


def test_of_a_draft_and_a_final_object_the_final_one_is_the_answer() -> None:
    reasoning, answer = split_output(DRAFT_THEN_FINAL)
    assert "must look like" in reasoning and "must look like" not in answer

    parsed = parse_answer(answer)

    assert parsed.classification == "Central Serous Chorioretinopathy"
    assert parsed.confidence == 82.0
    assert parsed.findings[0] == "Subretinal fluid"


def test_the_final_answer_wins_even_with_fewer_keys_than_an_earlier_one() -> None:
    """Completeness does not outrank order: a final object that leaves out the optional
    fields is still the answer, not the fuller draft before it."""
    text = (
        ANSWER + "\nCorrection:\n" + '{"classification": "Epiretinal Membrane", "confidence": 70}'
    )
    parsed = parse_answer(text)
    assert (parsed.classification, parsed.confidence) == ("Epiretinal Membrane", 70.0)
    assert set(parsed.missing) == {"findings", "recommendation", "explanation"}


def test_a_final_object_that_is_not_valid_is_not_replaced_by_the_draft() -> None:
    """The answer the model settled on is unusable: stored as unparsed, never swapped for
    an earlier draft's classification."""
    text = ANSWER + '\nFinal: {"classification": "Drusen", "confidence": "high"}'
    with pytest.raises(AnswerParseError, match="not a number"):
        parse_answer(text)


def test_an_example_after_the_answer_without_result_keys_is_not_the_answer() -> None:
    assert parse_answer(ANSWER + ' (schema: {"type": "object"})').confidence == 85.0


def test_parse_unterminated_fence() -> None:
    assert parse_answer(f"```json\n{ANSWER}").confidence == 85.0


def test_parse_trailing_commas_single_quotes_and_python_literals() -> None:
    text = (
        "{'classification': 'Normal', 'confidence': '92%', "
        "'findings': ['Foveal contour preserved',], 'recommendation': None, "
        "'explanation': \"The patient's retina looks normal\", 'urgent': False,}"
    )

    parsed = parse_answer(text)

    assert parsed.classification == "Normal"
    assert parsed.confidence == 92.0
    assert parsed.findings == ("Foveal contour preserved",)
    assert parsed.explanation == "The patient's retina looks normal"
    assert parsed.recommendation == ""
    assert parsed.missing == ("recommendation",)
    assert not parsed.is_abnormal


def test_parse_bare_keys_and_capitalized_keys() -> None:
    parsed = parse_answer('{Classification: "AMD", CONFIDENCE: 70, findings: "Drusen"}')

    assert (parsed.classification, parsed.confidence, parsed.findings) == ("AMD", 70.0, ("Drusen",))


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("85%", 85.0),
        ("85", 85.0),
        (0.85, 85.0),
        ("0.85", 85.0),
        (1.0, 100.0),
        (1, 1.0),
        (72.5, 72.5),
    ],
)
def test_confidence_forms(given: object, expected: float) -> None:
    text = json.dumps({"classification": "AMD", "confidence": given})

    assert parse_answer(text).confidence == expected


@pytest.mark.parametrize("given", ['"high"', "150", "-5", "true", '"70-80%"', "null"])
def test_confidence_that_is_no_number_in_range_is_an_error(given: str) -> None:
    with pytest.raises(AnswerParseError, match="confidence"):
        parse_answer('{"classification": "AMD", "confidence": ' + given + "}")


def test_missing_classification_is_an_error_not_a_guess() -> None:
    with pytest.raises(AnswerParseError, match="no classification"):
        parse_answer('{"confidence": 80, "findings": ["drusen"]}')


def test_missing_confidence_is_an_error_not_a_guess() -> None:
    with pytest.raises(AnswerParseError, match="no confidence"):
        parse_answer('{"classification": "Glaucoma suspect", "findings": []}')


def test_empty_classification_is_an_error() -> None:
    with pytest.raises(AnswerParseError):
        parse_answer('{"classification": "  ", "confidence": 80}')


def test_findings_of_the_wrong_type_are_an_error() -> None:
    with pytest.raises(AnswerParseError, match="findings"):
        parse_answer('{"classification": "AMD", "confidence": 80, "findings": {"a": 1}}')


def test_no_json_is_an_error_that_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="no complete JSON object"):
        parse_answer("The scan shows diabetic macular edema with 85% confidence.")


def test_truncated_json_is_an_error() -> None:
    with pytest.raises(AnswerParseError):
        parse_answer(ANSWER[:60])


def test_empty_answer_is_an_error() -> None:
    with pytest.raises(AnswerParseError, match="no answer"):
        parse_answer("  \n")


def test_the_object_with_the_result_keys_wins() -> None:
    text = 'Format: {"example": true}. Answer: ' + ANSWER

    assert parse_answer(text).classification == "Diabetic Macular Edema"


@pytest.mark.parametrize(
    ("classification", "abnormal"),
    [
        ("Normal", False),
        ("normal retina", False),
        ("No abnormality detected", False),
        ("Within normal limits", False),
        ("Normal-tension glaucoma", True),
        ("Glaucoma suspect", True),
        ("Not normal", True),
        ("CNV", True),
    ],
)
def test_is_abnormal(classification: str, abnormal: bool) -> None:
    answer = ParsedAnswer(classification=classification, confidence=50.0)

    assert answer.is_abnormal is abnormal


def test_stream_phases_split_tags_across_deltas() -> None:
    phases = StreamPhases()
    deltas = ["<th", "ink>Cy", "sts seen.</", "think", ">\n{", '"a": 1}']

    pieces = [piece for delta in deltas for piece in phases.feed(delta)] + phases.flush()

    reasoning = "".join(text for phase, text in pieces if phase == "reasoning")
    answer = "".join(text for phase, text in pieces if phase == "answer")
    assert reasoning == "Cysts seen."
    assert answer == '\n{"a": 1}'


def test_stream_phases_without_tags_are_all_answer() -> None:
    phases = StreamPhases()

    pieces = phases.feed("{<a>") + phases.feed("}") + phases.flush()

    assert pieces and all(phase == "answer" for phase, _ in pieces)
    assert "".join(text for _, text in pieces) == "{<a>}"
