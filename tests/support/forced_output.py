"""Make the tiny checkpoint write a chosen text through the real engine.

The random-weight model writes byte soup and the trained one a single fixed answer. To
see how the rest of the path (streaming, splitting, parsing, storing, the API) treats a
given answer, :func:`force_output` adds a logits processor to every ``generate`` call of
the Qwen2.5-VL class that leaves one token possible at each step: the tokens of the text,
then ``<|im_end|>``. Everything else, the engine's own processors included, runs as usual.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def force_output(monkeypatch: pytest.MonkeyPatch, checkpoint: Path, text: str) -> None:
    """Make every generation of the model at ``checkpoint`` write ``text`` and stop.

    Run the engine with ``max_new_tokens`` above the text's length in tokens (about one
    a character with the tiny tokenizer).
    """
    import torch
    from transformers import (
        AutoTokenizer,
        LogitsProcessor,
        Qwen2_5_VLForConditionalGeneration,
    )

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=False) == text
    ids.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))

    class Force(LogitsProcessor):
        def __init__(self) -> None:
            self.prompt_length: int | None = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.prompt_length is None:
                self.prompt_length = int(input_ids.shape[1])
            step = int(input_ids.shape[1]) - self.prompt_length
            forced = torch.full_like(scores, -float("inf"))
            forced[:, ids[min(step, len(ids) - 1)]] = 0.0
            return forced

    original = Qwen2_5_VLForConditionalGeneration.generate

    def generate(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["logits_processor"] = [*(kwargs.get("logits_processor") or []), Force()]
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Qwen2_5_VLForConditionalGeneration, "generate", generate)
