"""Splitting reasoning from the answer, and reading the answer's JSON tolerantly."""

from __future__ import annotations

import json

import pytest

from ophthai_desktop.core.errors import InvalidInput
from ophthai_desktop.core.inference.parsing import (
    AnswerParseError,
    ParsedAnswer,
    StreamPhases,
    edits_stored,
    parse_answer,
    split_output,
    validate_result,
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


DRUSEN = '{"classification": "Drusen", "confidence": 70, "findings": ["Soft drusen"]}'
NORMAL = '{"classification": "Normal", "confidence": 90, "findings": []}'


def _read(output: str) -> object:
    """What the stored answer of ``output`` reads as: the result, or the parse error."""
    try:
        return parse_answer(split_output(output)[1])
    except AnswerParseError as error:
        return error.message


@pytest.mark.parametrize(
    "output",
    [
        f"<think>Drusen.</think>{DRUSEN}<think>On reflection it is normal.</think>{NORMAL}",
        f"<think>Drusen.</think>{DRUSEN}</think>{NORMAL}",
        f"Drusen.</think>{DRUSEN}\n</think>\n{NORMAL}",  # the template opened <think>
        f"{DRUSEN}<think>Or is it normal?</think>{NORMAL}",
    ],
    ids=["thinks-again", "closes-twice", "prefilled-closes-twice", "answers-first"],
)
def test_an_answer_before_the_model_thinks_again_is_not_dropped(output: str) -> None:
    """Only the text after the last </think> was read, the rest filed as reasoning: a
    "Drusen" answer followed by more thinking and "Normal" was stored as Normal (no
    alarm). Both are read; as two answers in one, they must agree."""
    reasoning, answer = split_output(output)

    assert DRUSEN in answer and NORMAL in answer  # the raw answer the clinician reads
    assert DRUSEN not in reasoning
    assert _read(output) == (
        "The answer gives two different classifications: Drusen and Normal. "
        "Read the model's answer."
    )


@pytest.mark.parametrize(
    "output",
    [
        f"<think>Drusen.</think>{DRUSEN}\n</think>",
        f"<think>Drusen.</think>{DRUSEN}\n<think>Let me look at the RPE again",
        f"<think>Drusen.</think>{DRUSEN}<think>Fine.</think>That is my answer.",
    ],
    ids=["stray-close", "thinks-again-cut-off", "prose-after"],
)
def test_a_result_the_model_went_on_thinking_after_is_no_answer(output: str) -> None:
    """The model wrote a result, then </think> or <think> again, and no result after:
    whether the result is its answer or a draft in its reasoning is not known."""
    _, answer = split_output(output)

    assert DRUSEN in answer
    message = _read(output)
    assert isinstance(message, str)
    assert message.startswith("After a result the model wrote <think> or </think> again")
    assert message.endswith("Read the model's answer.")


def test_an_answer_repeated_after_thinking_again_is_read() -> None:
    output = f"<think>Drusen.</think>{DRUSEN}<think>Checking the RPE.</think>\n{DRUSEN}"

    reasoning, _ = split_output(output)

    assert reasoning == "Drusen.\n\nChecking the RPE."
    assert _read(output) == parse_answer(DRUSEN)


def test_reasoning_continued_after_the_budget_closed_it_leaves_the_answer() -> None:
    """The thinking budget forces </think>; the model may go on reasoning and close it
    again itself before it answers: the answer after that is read."""
    output = f"<think>Drusen at the macula</think> and the RPE is intact.</think>\n{DRUSEN}"

    assert _read(output) == parse_answer(DRUSEN)


def test_json_inside_a_later_think_block_is_not_read() -> None:
    output = (
        f'<think>Drusen.</think>{DRUSEN}<think>Not {{"classification": "Normal", '
        f'"confidence": 50}}: the drusen are soft.</think>{DRUSEN}'
    )

    assert _read(output) == parse_answer(DRUSEN)


def test_a_result_cut_off_before_the_model_thinks_again_is_a_parse_failure() -> None:
    output = f'<think>A.</think>{{"classification": "Drusen", "conf</think>{NORMAL}'

    message = _read(output)

    assert isinstance(message, str) and "cannot be read" in message


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (  # two diagnoses
            '{"classification": "DME", "confidence": 80} {"classification": "Normal", '
            '"confidence": 80} {"classification": "dme.", "confidence": 80}',
            ("DME", "Normal"),
        ),
        (  # one diagnosis, two confidences
            ANSWER + ' {"classification": "Diabetic Macular Edema", "confidence": 40}',
            ("Diabetic Macular Edema",),
        ),
        ('{"classification": "AMD", "confidence": 1}', ("AMD",)),  # ambiguous confidence
        ('{"classification": "AMD", "confidence": "high"}', ("AMD",)),
        ('{"classification": "AMD"}', ("AMD",)),  # no confidence
        (  # cut off at the token cap: the classification was written whole
            '{"classification": "Diabetic Macular Edema", "confidence": 8',
            ("Diabetic Macular Edema",),
        ),
        ('{"classification": "Diabetic Mac', ()),  # not whole: no diagnosis
        ("<think>A.</think>" + ANSWER + "</think>", ("Diabetic Macular Edema",)),
        ('{"classification": "...", "confidence": 80, "findings": 3}', ()),
        ("The scan shows drusen.", ()),
    ],
    ids=[
        "conflict",
        "confidences",
        "ambiguous",
        "no-number",
        "no-confidence",
        "cut-off",
        "cut-in-label",
        "thought-again",
        "placeholder",
        "prose",
    ],
)
def test_an_answer_that_cannot_be_read_names_the_classifications_it_gave(
    answer: str, named: tuple[str, ...]
) -> None:
    """For the alarm: an unreadable answer that names an abnormal diagnosis is still to
    be seen at once (JobService.complete)."""
    with pytest.raises(AnswerParseError) as raised:
        parse_answer(split_output(answer)[1])

    assert raised.value.classifications == named


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
#: then after ``</think>`` a draft and a corrected object that names another diagnosis.
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


def test_objects_naming_different_diagnoses_are_a_parse_failure_that_names_both() -> None:
    """Neither the draft nor the correction is taken: the clinician reads the raw text.
    The example inside the reasoning is never read."""
    reasoning, answer = split_output(DRAFT_THEN_FINAL)
    assert "must look like" in reasoning and "must look like" not in answer

    with pytest.raises(AnswerParseError) as raised:
        parse_answer(answer)

    assert raised.value.message == (
        "The answer gives two different classifications: Normal and "
        "Central Serous Chorioretinopathy. Read the model's answer."
    )


#: OctoMed's reasoning, a fenced answer, then the same answer again in prose: the objects
#: agree, so the answer is read as one.
ECHOED = (
    "<think>Intraretinal cystoid spaces and subretinal fluid at the fovea; the outer "
    "retina is otherwise intact.</think>\n"
    f"```json\n{ANSWER}\n```\n"
    f"Final answer: {ANSWER}"
)


def test_an_answer_echoed_after_itself_is_read_once() -> None:
    _, answer = split_output(ECHOED)

    assert parse_answer(answer) == parse_answer(ANSWER)


def test_objects_that_agree_take_the_last_even_with_fewer_keys() -> None:
    """Order, not completeness: a final summary that agrees on the classification and the
    confidence (in another spelling) is the result, with the fields it leaves out missing."""
    text = (
        ANSWER
        + "\nIn short:\n"
        + "{'Classification': 'diabetic macular  edema', 'confidence': '85%'}"
    )
    parsed = parse_answer(text)
    assert (parsed.classification, parsed.confidence) == ("diabetic macular edema", 85.0)
    assert set(parsed.missing) == {"findings", "recommendation", "explanation"}


@pytest.mark.parametrize(
    ("first", "last"),
    [("Normal", "normal."), ("Normal", "No abnormality detected"), ("No DR", "Normal (no DR)")],
)
def test_an_echo_that_says_the_same_in_other_words_is_no_conflict(first: str, last: str) -> None:
    """A closing full stop, or two ways of saying normal, are the same result for the
    patient (status, alarm): the last object is taken, not a parse failure."""
    text = (
        f'{{"classification": "{first}", "confidence": 90}}\n'
        f'Summary: {{"classification": "{last}", "confidence": 90}}'
    )

    parsed = parse_answer(text)

    assert (parsed.classification, parsed.is_abnormal) == (last, False)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        ("DME", "Diabetic Macular Edema"),
        ("Diabetic macular oedema", "DME"),
        ("DMO", "Diabetic macular edema"),
        ("Diabetic Macular Edema (DME)", "DME"),
        ("AMD", "Age-related macular degeneration"),
        ("Age related macular degeneration", "ARMD"),
        ("Wet AMD", "Wet age-related macular degeneration"),
        ("nAMD", "Neovascular AMD"),
        ("CNV", "Choroidal neovascularization"),
        ("Choroidal neovascularisation", "CNV."),
        ("DR", "Diabetic retinopathy"),
        ("Mild NPDR", "Mild non-proliferative diabetic retinopathy"),
        ("Severe nonproliferative diabetic retinopathy", "Severe NPDR"),
        ("PDR", "Proliferative diabetic retinopathy"),
        ("CSC", "Central Serous Chorioretinopathy"),
        ("CSR", "Central serous retinopathy"),
        ("CSCR", "CSC"),
        ("ERM", "Epiretinal membrane"),
        ("MH", "Macular hole"),
        ("FTMH", "Full-thickness macular hole"),
        ("RVO", "Retinal Vein Occlusion"),
        ("BRVO", "Branch retinal vein occlusion"),
        ("CRVO with macular oedema", "Central retinal vein occlusion with macular edema"),
        ("VMT", "Vitreomacular traction"),
        ("Vitreo-macular traction", "VMT"),
        ("CSME", "Clinically significant macular edema"),
        ("PDR with DME", "Proliferative diabetic retinopathy with diabetic macular oedema"),
        ("Normal-tension glaucoma", "Normal tension glaucoma"),
        ("Retinal haemorrhages", "Retinal hemorrhages"),
    ],
)
def test_an_abbreviation_and_its_expansion_are_the_same_classification(
    first: str, last: str
) -> None:
    """The model echoing "DME" as "Diabetic Macular Edema" (or in British spelling, or
    with a hyphen for a space) names one diagnosis: the last object is taken, its text
    unchanged, not a parse failure."""
    text = (
        f'{{"classification": "{first}", "confidence": 80}}\n'
        f'Final answer: {{"classification": "{last}", "confidence": 80}}'
    )

    parsed = parse_answer(text)

    assert (parsed.classification, parsed.confidence, parsed.is_abnormal) == (last, 80.0, True)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        ("Wet AMD", "Neovascular AMD"),
        ("Exudative AMD", "nAMD"),
        ("Wet age-related macular degeneration", "Neovascular AMD"),
        ("Neovascular age-related macular degeneration (wet AMD)", "Exudative ARMD"),
        ("Dry AMD", "Non-neovascular AMD"),
        ("Non-exudative AMD", "Dry age-related macular degeneration"),
        ("Nonexudative AMD", "Non neovascular AMD"),
        ("Dry AMD with drusen", "Non-exudative AMD with drusen"),
    ],
)
def test_other_names_of_one_diagnosis_are_the_same_classification(first: str, last: str) -> None:
    """Wet, exudative and neovascular AMD (nAMD) are one diagnosis, and so are dry,
    non-exudative and non-neovascular AMD: the model naming it one way and then another
    is one classification, not a conflict (wet against neovascular was one before)."""
    text = (
        f'{{"classification": "{first}", "confidence": 80}}\n'
        f'Final answer: {{"classification": "{last}", "confidence": 80}}'
    )

    parsed = parse_answer(text)

    assert (parsed.classification, parsed.confidence, parsed.is_abnormal) == (last, 80.0, True)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        ("CSR", "CSC"),
        ("Central serous retinopathy", "Central serous chorioretinopathy"),
        ("CSR", "Central serous chorioretinopathy"),
        ("Central serous retinopathy", "CSCR"),
    ],
)
def test_central_serous_retinopathy_and_chorioretinopathy_are_one_diagnosis(
    first: str, last: str
) -> None:
    """Central serous retinopathy (CSR) is the older name of central serous
    chorioretinopathy (CSC, CSCR): one disease, the choroid's part in it named later. The
    two names are one classification on purpose; this test keeps them so."""
    text = (
        f'{{"classification": "{first}", "confidence": 80}}\n'
        f'Final answer: {{"classification": "{last}", "confidence": 80}}'
    )

    parsed = parse_answer(text)

    assert (parsed.classification, parsed.is_abnormal) == (last, True)


@pytest.mark.parametrize(
    ("first", "last"),
    [
        ("Mild NPDR", "Severe NPDR"),
        ("Mild NPDR", "Moderate non-proliferative diabetic retinopathy"),
        ("NPDR", "PDR"),
        ("NPDR", "Proliferative diabetic retinopathy"),
        ("DR", "PDR"),
        ("NPDR", "Mild NPDR"),
        ("Wet AMD", "Dry AMD"),
        ("Wet AMD", "Dry age-related macular degeneration"),
        ("AMD", "Wet AMD"),
        ("Wet AMD", "Non-neovascular AMD"),
        ("Neovascular AMD", "Dry AMD"),
        ("Exudative AMD", "Non-exudative AMD"),
        ("nAMD", "Nonexudative age-related macular degeneration"),
        ("Dry AMD", "Geographic atrophy"),  # its advanced form: more specific
        ("Non-neovascular AMD", "GA"),
        ("Neovascular AMD", "CNV"),
        ("BRVO", "CRVO"),
        ("RVO", "Branch retinal vein occlusion"),
        ("DME", "CME"),
        ("DME", "Macular edema"),
        ("DME", "Diabetic retinopathy"),
        ("DME OD", "DME OS"),
        ("Right eye DME", "Left eye diabetic macular edema"),
        ("CNV", "AMD"),
        ("MH", "Lamellar macular hole"),
        ("Macular hole", "Full-thickness macular hole"),
        ("VMT", "VMA"),
        ("CNV", "No CNV"),
        ("No DME (CNV)", "No DME"),
    ],
)
def test_different_diagnoses_severities_or_eyes_still_disagree(first: str, last: str) -> None:
    """Only an abbreviation and its expansion (or a spelling) agree: another diagnosis, a
    more or less specific one, another severity or eye is a parse failure, as before."""
    text = (
        f'{{"classification": "{first}", "confidence": 80}}\n'
        f'Final answer: {{"classification": "{last}", "confidence": 80}}'
    )

    with pytest.raises(AnswerParseError, match="two different classifications"):
        parse_answer(text)


def test_the_answer_disagreeing_with_the_first_as_dme_then_normal_is_not_normal() -> None:
    """The case that matters most: an abnormal diagnosis followed by "Normal" must not be
    stored as a normal scan (no alarm, patient marked stable)."""
    text = (
        '```json\n{"classification": "DME", "confidence": 80, "findings": ["Cysts"]}\n```\n'
        '```json\n{"classification": "Normal", "confidence": 80, "findings": []}\n```'
    )
    with pytest.raises(AnswerParseError, match="two different classifications: DME and Normal"):
        parse_answer(text)


def test_three_different_classifications_are_all_named() -> None:
    text = (
        '{"classification": "AMD", "confidence": 60} {"classification": "Drusen", '
        '"confidence": 60} {"classification": "AMD", "confidence": 60} '
        '{"classification": "CNV", "confidence": 60}'
    )
    named = "three different classifications: AMD, Drusen and CNV"
    with pytest.raises(AnswerParseError, match=named):
        parse_answer(text)


def test_the_same_diagnosis_with_different_confidences_is_a_parse_failure() -> None:
    text = ANSWER + '\nRevised: {"classification": "Diabetic Macular Edema", "confidence": 0.4}'
    with pytest.raises(AnswerParseError) as raised:
        parse_answer(text)
    assert raised.value.message == (
        "The answer gives two different confidences for Diabetic Macular Edema: 85 and 40. "
        "Read the model's answer."
    )


def test_an_echoed_format_before_the_answer_is_no_conflict() -> None:
    """A placeholder names no diagnosis and gives no number: it disagrees with nothing."""
    text = 'Format: {"classification": "...", "confidence": "0-100"}\nAnswer: ' + ANSWER
    assert parse_answer(text).classification == "Diabetic Macular Edema"


def test_a_final_object_that_is_not_valid_is_not_replaced_by_the_draft() -> None:
    """The answer the model settled on is unusable: stored as unparsed, never swapped for
    an earlier draft's confidence."""
    text = ANSWER + '\nFinal: {"classification": "Diabetic Macular Edema", "confidence": "high"}'
    with pytest.raises(AnswerParseError, match="not a number"):
        parse_answer(text)


def test_a_final_object_that_is_not_valid_and_disagrees_names_the_disagreement() -> None:
    text = ANSWER + '\nFinal: {"classification": "Drusen", "confidence": "high"}'
    with pytest.raises(AnswerParseError, match="Diabetic Macular Edema and Drusen"):
        parse_answer(text)


@pytest.mark.parametrize(
    "text",
    [
        '{"classification": "DME", "confidence": 80, "Classification": "Normal"}',
        '{"classification": "DME", "classification": "Normal", "confidence": 80}',
        "{'classification': 'DME', 'CLASSIFICATION': 'Normal', 'confidence': 80, 'eye': {1}}",
        '{"classification": ["DME", "Normal"], "confidence": 80}',
    ],
    ids=["case", "repeated", "python", "list"],
)
def test_one_object_giving_two_classifications_is_a_parse_failure(text: str) -> None:
    """A key given twice (in any case or spelling) is two answers, not the last one."""
    with pytest.raises(AnswerParseError, match="two different classifications: DME and Normal"):
        parse_answer(text)


def test_one_object_giving_a_key_twice_alike_is_read() -> None:
    text = (
        '{"classification": "DME", "Classification": "dme", "confidence": 80, '
        '"Confidence": 0.8, "note": "a", "note": "b"}'
    )
    assert (parse_answer(text).classification, parse_answer(text).confidence) == ("dme", 80.0)
    assert parse_answer('{"classification": ["AMD", "AMD"], "confidence": 70}').classification == (
        "AMD"
    )


def test_a_result_sent_back_with_a_key_in_two_cases_is_refused() -> None:
    with pytest.raises(AnswerParseError, match="DME and Normal"):
        validate_result({"classification": "DME", "Classification": "Normal", "confidence": 80})


@pytest.mark.parametrize("given", ['"..."', '"?"', '"-"', '["..."]'])
def test_a_classification_without_a_letter_or_digit_is_none(given: str) -> None:
    """A placeholder is no diagnosis (it would be filed as abnormal, with an alarm)."""
    with pytest.raises(AnswerParseError, match="no classification"):
        parse_answer('{"classification": ' + given + ', "confidence": 80}')


def test_a_confidence_too_large_for_a_float_is_an_error_not_a_crash() -> None:
    """An integer of hundreds of digits raised OverflowError, which failed the job and lost
    the model's text instead of storing it as unparsed."""
    with pytest.raises(AnswerParseError, match="outside 0-100"):
        parse_answer('{"classification": "AMD", "confidence": 1' + "0" * 400 + "}")


@pytest.mark.parametrize(
    "tail",
    [
        '\nFinal answer: {"classification": "Norm',
        '\nFinal answer:\n```json\n{"classification": "Diabetic Macular Edema", "confid',
        '\nFinal answer: {"classification": "Normal", "confidence": high-ish}',
    ],
    ids=["cut-off", "cut-off-same-so-far", "not-json"],
)
def test_a_second_answer_that_cannot_be_read_after_one_is_a_parse_failure(tail: str) -> None:
    """Generation stopped (at the token cap) inside a second answer, or wrote one that
    is no JSON: whether it agrees is unknown, so the one before it is not the result."""
    with pytest.raises(AnswerParseError, match="cannot be read"):
        parse_answer(ANSWER + tail)


def test_an_open_brace_that_gives_no_answer_does_not_hide_the_answer() -> None:
    assert parse_answer(ANSWER + " {").confidence == 85.0
    text = f"The layers {{RNFL and GCL are intact.\n```json\n{ANSWER}\n```"
    assert parse_answer(text).confidence == 85.0


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
        (95, 95.0),
        ("95%", 95.0),
        ("95 percent", 95.0),
        (0.85, 85.0),
        ("0.85", 85.0),
        ("0.95", 95.0),
        (".95", 95.0),
        (72.5, 72.5),
        (1.5, 1.5),
        (100, 100.0),
        ("100%", 100.0),
        # Nothing: the same whichever scale it is on.
        (0, 0.0),
        (0.0, 0.0),
        ("0", 0.0),
        ("0.0", 0.0),
        # With a percent sign the scale is said: a small confidence stays small.
        ("1%", 1.0),
        ("1.0%", 1.0),
        ("0.5%", 0.5),
    ],
)
def test_confidence_forms(given: object, expected: float) -> None:
    """A number from 0 to 100 as the prompt asks, or a fraction 0-1 (0.95 is 95%: 0.95%
    for the model's own most likely diagnosis is no credible reading), however it is
    spelt: an integer, a float or a string read alike."""
    text = json.dumps({"classification": "AMD", "confidence": given})

    assert parse_answer(text).confidence == expected


@pytest.mark.parametrize("given", ["1", "1.0", '"1"', '"1.0"', '"1.00"', '" ~1 "'])
def test_a_confidence_of_one_without_a_percent_sign_is_ambiguous(given: str) -> None:
    """1 is 1% on the prompt's 0-100 scale and 100% as a fraction: a hundredfold
    difference no spelling settles (an integer 1 was read as 1% and a float 1.0 as
    100%). Nothing is shown for it: the clinician reads the model's answer."""
    with pytest.raises(AnswerParseError) as raised:
        parse_answer('{"classification": "AMD", "confidence": ' + given + "}")

    assert "ambiguous" in raised.value.message
    assert "1% on the 0-100 scale, or 100% as a fraction" in raised.value.message


def test_an_ambiguous_confidence_before_the_answer_is_no_agreement() -> None:
    """An echo giving 1 may be 1% against the answer's 100: whether they agree is not
    known, so neither is taken."""
    text = (
        '{"classification": "AMD", "confidence": 1}\n'
        'Final: {"classification": "AMD", "confidence": 100}'
    )
    with pytest.raises(AnswerParseError, match="ambiguous"):
        parse_answer(text)


def test_a_result_sent_back_with_a_confidence_of_one_is_refused() -> None:
    with pytest.raises(AnswerParseError, match="ambiguous"):
        validate_result({"classification": "AMD", "confidence": 1})
    assert validate_result({"classification": "AMD", "confidence": "1%"}).confidence == 1.0


STORED = {
    "classification": "Drusen",
    "confidence": 1.0,
    "findings": ["small drusen"],
    "recommendation": "",
    "explanation": "",
}


@pytest.mark.parametrize("confidence", [1.0, 1, 0.5])
def test_a_result_sent_back_as_stored_is_read_as_stored(confidence: float) -> None:
    """The server stored its percentage: 1 is the 1% it read, 0.5 stays 0.5%, not a
    fraction read again as 50%. Provenance keys around it change nothing."""
    stored = {**STORED, "confidence": float(confidence)}
    sent = {**stored, "confidence": confidence, "analysis_id": 7, "status": "preliminary"}

    assert validate_result(sent, stored=stored).confidence == float(confidence)


@pytest.mark.parametrize(
    "change",
    [{"classification": "CNV"}, {"findings": []}, {"confidence": True}, {"Classification": "x"}],
)
def test_a_result_sent_back_changed_is_read_as_new(change: dict[str, object]) -> None:
    with pytest.raises(AnswerParseError):
        validate_result({**STORED, **change}, stored=STORED)


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
        ("No DR", False),
        ("No diabetic retinopathy", False),
        ("No signs of diabetic retinopathy.", False),
        ("No evidence of glaucoma", False),
        ("No DME detected", False),
        ("No macular edema", False),
        ("No choroidal neovascularisation", False),
        ("No diabetic macular oedema", False),
        ("No DME, but CNV", True),
        ("Normal (no DR)", False),
        ("Normal - no DME", False),
        ("Normal retina; drusen", True),
        ("Normal (borderline drusen)", True),
        ("No DR; moderate NPDR in the other eye", True),
        ("No improvement of DME", True),
        # A parenthesis giving the words before it again is not a finding of its own.
        ("No diabetic macular edema (DME)", False),
        ("No DME (diabetic macular oedema)", False),
        ("No diabetic retinopathy (DR) detected", False),
        ("No age-related macular degeneration (AMD)", False),
        ("No DME (CNV)", True),
        ("No diabetic macular edema (DME), but CNV", True),
        ("No diabetic macular edema (CME)", True),
        ("Diabetic macular edema (DME)", True),
        ("Diabetic retinopathy", True),
    ],
)
def test_is_abnormal(classification: str, abnormal: bool) -> None:
    answer = ParsedAnswer(classification=classification, confidence=50.0)

    assert answer.is_abnormal is abnormal


@pytest.mark.parametrize(
    ("classification", "ungradable"),
    [
        ("Ungradable", True),
        ("ungradable image", True),
        ("Not gradable.", True),
        ("Poor image quality", True),
        ("Non-diagnostic scan", True),
        # With the reason, as models add it; the prompt's "not a retinal image" case.
        ("Ungradable (poor image quality)", True),
        ("Ungradable - not a retinal image", True),
        ("Ungradable: media opacity", True),
        ("Image ungradable due to cataract.", True),
        ("Ungradable, blurred image", True),
        ("Not a retinal image", True),
        ("Poor-quality image", True),
        ("Low image quality", True),
        ("Image quality insufficient", True),
        ("Cannot be graded", True),
        ("Normal", False),
        ("CNV", False),
        ("Ungradable macular hole", False),  # a finding after all
        ("Ungradable - suspected macular hole", False),  # a reason that is a finding
        ("Ungradable (DME)", False),
        ("Ungraded diabetic retinopathy", False),
    ],
)
def test_an_image_the_model_could_not_read_is_neither_abnormal_nor_normal(
    classification: str, ungradable: bool
) -> None:
    answer = ParsedAnswer(classification=classification, confidence=50.0)

    assert answer.is_ungradable is ungradable
    if ungradable:
        assert not answer.is_abnormal


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


SHOWN = {
    "classification": "AMD",
    "confidence": 82.0,
    "findings": ["drusen"],
    "recommendation": "OCT in 6 months",
    "explanation": "",
}


@pytest.mark.parametrize(
    ("sent", "edited"),
    [
        (SHOWN, False),
        ({"classification": "AMD", "confidence": 82.0}, False),  # keys left out
        ({**SHOWN, "confidence": "82%", "findings": "drusen"}, False),  # as first sent
        ({**SHOWN, "Classification": "AMD"}, False),  # the same in another case
        ({**SHOWN, "explanation": None}, False),
        ({**SHOWN, "classification": "Wet AMD"}, True),
        ({**SHOWN, "confidence": 90}, True),
        ({**SHOWN, "confidence": True}, True),
        ({**SHOWN, "findings": ["drusen", "GA"]}, True),
        ({**SHOWN, "recommendation": "Refer"}, True),
        ({**SHOWN, "Classification": "CNV"}, True),  # two values for one key
    ],
)
def test_an_edit_of_a_stored_result_is_a_value_read_otherwise(
    sent: dict[str, object], edited: bool
) -> None:
    assert edits_stored(sent, SHOWN) is edited
