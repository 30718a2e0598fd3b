"""The generate() hooks on real tokenizers: streaming, the thinking budget, cancellation."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from ophthai_desktop.core.inference.generation import (
    CancelCriteria,
    DeltaStreamer,
    ThinkingBudgetProcessor,
    hidden_token_ids,
)
from tests.support.tiny_checkpoint import build_tiny_tokenizer

PROMPT = "<|im_start|>user\nLook.<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint: Path) -> Any:
    """Qwen-style tokenizer in which <think> and </think> are single tokens."""
    return AutoTokenizer.from_pretrained(str(tiny_checkpoint))


@pytest.fixture(scope="module")
def split_tag_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Qwen2.5-style tokenizer that spells <think> and </think> with several tokens."""
    folder = tmp_path_factory.mktemp("split-tags")
    build_tiny_tokenizer(folder, think_tokens=False)
    return AutoTokenizer.from_pretrained(str(folder))


def run_greedy(
    tokenizer: Any, budget: int, output_text: str, *, open_at_start: bool = False
) -> tuple[str, ThinkingBudgetProcessor]:
    """Replay ``output_text`` token by token as the model's wish, under the processor.

    Where the processor forces a token, that token is taken instead of the wished one
    and the wish is kept for the next step, as a model would keep writing.
    """
    prompt_ids = tokenizer.encode(PROMPT, add_special_tokens=False)
    wishes = tokenizer.encode(output_text, add_special_tokens=False)
    processor = ThinkingBudgetProcessor(
        tokenizer, prompt_length=len(prompt_ids), budget=budget, open_at_start=open_at_start
    )
    ids = list(prompt_ids)
    vocab = len(tokenizer)
    while wishes:
        scores = torch.zeros(1, vocab)
        scores[0, wishes[0]] = 1.0
        processed = processor(torch.tensor([ids]), scores.clone())
        chosen = int(processed[0].argmax())
        forced = bool(torch.isinf(processed[0]).sum() == vocab - 1)
        ids.append(chosen)
        if not forced:
            wishes.pop(0)
    generated = tokenizer.decode(ids[len(prompt_ids) :], skip_special_tokens=False)
    return generated, processor


@pytest.mark.parametrize("fixture", ["tokenizer", "split_tag_tokenizer"])
def test_budget_closes_think_after_n_tokens(fixture: str, request: pytest.FixtureRequest) -> None:
    tokenizer = request.getfixturevalue(fixture)
    assert (len(tokenizer.encode("</think>", add_special_tokens=False)) > 1) == (
        fixture == "split_tag_tokenizer"
    )
    thought = " macula" * 12

    generated, processor = run_greedy(tokenizer, 4, f"<think>{thought}")

    think_tokens = tokenizer.encode(thought, add_special_tokens=False)
    expected_thought = tokenizer.decode(think_tokens[:4])
    assert generated.startswith(f"<think>{expected_thought}</think>")
    assert processor.forced_close
    # After closing, the model writes on freely.
    assert generated.endswith(tokenizer.decode(think_tokens[4:]))


def test_budget_leaves_a_closed_think_alone(tokenizer: Any) -> None:
    text = "<think> short</think>{}"

    generated, processor = run_greedy(tokenizer, 20, text)

    assert generated == text
    assert not processor.forced_close


def test_budget_leaves_output_without_think_alone(tokenizer: Any) -> None:
    text = " macula" * 10

    generated, processor = run_greedy(tokenizer, 3, text)

    assert generated == text
    assert not processor.forced_close


def test_budget_zero_is_off(tokenizer: Any) -> None:
    text = "<think>" + " macula" * 10

    generated, processor = run_greedy(tokenizer, 0, text)

    assert generated == text
    assert not processor.forced_close


def test_budget_counts_from_the_start_when_the_prompt_opened_think(tokenizer: Any) -> None:
    thought = " macula" * 5
    tokens = tokenizer.encode(thought, add_special_tokens=False)

    generated, processor = run_greedy(tokenizer, 3, thought, open_at_start=True)

    assert generated.startswith(tokenizer.decode(tokens[:3]) + "</think>")
    assert processor.forced_close


def test_streamer_never_splits_a_character_and_hides_chat_tokens(tokenizer: Any) -> None:
    text = '<think>Drüsen 👁 seen</think>{"a": 1}'
    ids = tokenizer.encode(text + "<|im_end|>", add_special_tokens=False)
    assert len(ids) > len(tokenizer.encode("👁", add_special_tokens=False))
    deltas: list[str] = []
    streamer = DeltaStreamer(tokenizer, deltas.append, hidden_ids=hidden_token_ids(tokenizer))

    streamer.put(torch.tensor([[1, 2, 3]]))  # the prompt, skipped
    for token in ids:
        streamer.put(torch.tensor([token]))
    streamer.end()

    assert "".join(deltas) == text == streamer.text
    assert not any("\ufffd" in delta for delta in deltas)
    assert streamer.token_count == len(ids)
    assert streamer.first_token_at is not None


def test_cancel_criteria_follows_the_event() -> None:
    cancel = threading.Event()
    criteria = CancelCriteria(cancel)
    input_ids = torch.zeros(2, 5, dtype=torch.long)

    assert not criteria(input_ids, None).any()
    cancel.set()
    assert criteria(input_ids, None).all()
    assert criteria.triggered
