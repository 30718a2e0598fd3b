"""The image-only processor that stands in where torchvision is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from PIL import Image

from ophthai_desktop.core.inference.processor import build_image_only_processor, load_processor
from ophthai_desktop.core.inference.prompt import build_messages


def test_image_only_processor_expands_the_image_placeholder(tiny_checkpoint: Path) -> None:
    processor = build_image_only_processor(tiny_checkpoint)
    prompt = processor.apply_chat_template(
        build_messages("Any drusen?", "OCT"), add_generation_prompt=True, tokenize=False
    )

    inputs = processor(
        text=[prompt],
        images=[Image.new("RGB", (300, 200), (90, 40, 20))],
        return_tensors="pt",
        images_kwargs={"size": {"shortest_edge": 3136, "longest_edge": 3136 * 16}},
    )

    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    grid = inputs["image_grid_thw"][0]
    assert int((inputs["input_ids"][0] == image_pad).sum()) == int(grid.prod()) // 4
    assert int(grid.prod()) * 14 * 14 <= 3136 * 16  # patches stay within the pixel budget
    assert inputs["pixel_values"].shape[0] == int(grid.prod())
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "Any drusen?" in prompt and "OCT" in prompt


def test_load_processor_falls_back_only_without_torchvision(tiny_checkpoint: Path) -> None:
    processor = load_processor(tiny_checkpoint, "qwen2_5_vl")

    has_torchvision = importlib.util.find_spec("torchvision") is not None
    assert (type(processor).__name__ == "ImageOnlyQwen2_5_VLProcessor") is not has_torchvision
    assert processor.chat_template
