"""The versioned prompt for OctoMed-7B.

Any change to the wording is a new :data:`PROMPT_VERSION`; analyses store the version
they were made with, so results stay comparable.
"""

from __future__ import annotations

from typing import Any

from ophthai_desktop.core.domain import Modality

PROMPT_VERSION = "octomed-oct-v1"

#: The longest question a clinician may add to an analysis, in characters.
MAX_QUESTION_CHARS = 2000
#: Tokens the chat template adds around the messages at most: role markers, the image's
#: start and end markers, an opened ``<think>``.
TEMPLATE_TOKENS = 64

#: Labels the prompt offers; the model may answer another one.
EXAMPLE_CLASSIFICATIONS = (
    "Normal",
    "Diabetic Macular Edema",
    "Diabetic Retinopathy",
    "AMD",
    "Choroidal Neovascularization",
    "Drusen",
    "Glaucoma suspect",
    "Retinal Vein Occlusion",
    "Epiretinal Membrane",
    "Macular Hole",
    "Central Serous Chorioretinopathy",
)

SYSTEM_PROMPT = (
    "You are OctoMed, an ophthalmology assistant that reads retinal images (OCT, OCT "
    "angiography and fundus photographs) for a clinician, who validates every result.\n"
    "First reason step by step inside <think> and </think>: describe the image quality, "
    "the layers or structures you see, and what is abnormal. Then, after </think>, answer "
    "with ONLY one JSON object and nothing else, with exactly these keys:\n"
    '  "classification": the single most likely diagnosis, a short string such as '
    + ", ".join(f'"{label}"' for label in EXAMPLE_CLASSIFICATIONS)
    + ";\n"
    '  "confidence": your confidence in the classification, a number from 0 to 100;\n'
    '  "findings": a list of short strings, one per observed finding;\n'
    '  "recommendation": the suggested next step for the clinician, a string;\n'
    '  "explanation": one or two sentences linking the findings to the classification.\n'
    'If the image is not a retinal image or is unreadable, say so in "explanation" and '
    'use the classification "Ungradable".'
)


def user_prompt(question: str | None = None, modality: str | None = None) -> str:
    """The user turn's text; ``modality`` (e.g. ``"OCT"``) and ``question`` are optional."""
    parts = []
    if modality:
        parts.append(f"This is a {modality.strip()} image of the retina.")
    parts.append("Analyse the image and answer in the format described.")
    if question and question.strip():
        parts.append(f"The clinician also asks: {question.strip()}")
    return " ".join(parts)


def build_messages(
    question: str | None = None, modality: str | None = None
) -> list[dict[str, Any]]:
    """Chat messages in the Qwen2.5-VL format, with one image placeholder before the text."""
    return [
        {"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]},
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": user_prompt(question, modality)},
            ],
        },
    ]


def longest_prompt_tokens() -> int:
    """An upper bound on the prompt's text tokens, the image's left out: the characters
    of the system prompt and of the user turn with the longest modality and question,
    plus :data:`TEMPLATE_TOKENS`. Qwen's byte-level BPE makes a token of one character
    or more for English text (the system prompt takes about one per four characters); a
    question in a script it splits into bytes can take more than one per character.
    The memory estimate sizes the KV cache and the prefill with it."""
    modality = max((m.value for m in Modality), key=len)
    question = "x" * MAX_QUESTION_CHARS
    return len(SYSTEM_PROMPT) + len(user_prompt(question, modality)) + TEMPLATE_TOKENS
