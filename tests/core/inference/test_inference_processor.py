"""The image-only processor that stands in where torchvision is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

from ophthai_desktop.core.errors import ModelUnavailable
from ophthai_desktop.core.inference.processor import (
    ModelInputs,
    build_image_only_processor,
    load_processor,
    processor_fitter,
)
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


def _speckled(mode: str, size: tuple[int, int]) -> Image.Image:
    import numpy as np

    rng = np.random.default_rng(7)
    bands = 3 if mode == "RGB" else 1
    pixels = rng.integers(0, 256, (size[1], size[0], bands), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if bands == 1 else pixels, mode)


def test_resizing_before_the_processor_gives_its_own_pixels(tiny_checkpoint: Path) -> None:
    """The engine shrinks a gray image while it is one channel; the model must see
    exactly what the processor's own resize of the RGB image would have given it."""
    import torch

    from ophthai_desktop.core.inference.preprocess import prepare_image

    processor = load_processor(tiny_checkpoint, "qwen2_5_vl")
    for mode, size, max_pixels in [
        ("L", (512, 496), 12544),  # shrunk a lot
        ("L", (512, 496), 401408),  # only rounded to the patch grid
        ("RGB", (640, 480), 12544),
        ("L", (90, 60), 401408),  # grown to the minimum
    ]:
        image = _speckled(mode, size)
        fitter = processor_fitter(processor, min_pixels=3136, max_pixels=max_pixels)
        assert fitter is not None
        fit, resample = fitter
        kwargs = {"size": {"shortest_edge": 3136, "longest_edge": max_pixels}}

        own = processor.image_processor(images=[image.convert("RGB")], **kwargs)
        ahead = prepare_image(image, fit=fit, resample=resample)
        assert ahead.mode == "RGB" and ahead.size == fit(size)
        ours = processor.image_processor(images=[ahead], **kwargs)

        assert torch.equal(
            torch.as_tensor(own["image_grid_thw"]), torch.as_tensor(ours["image_grid_thw"])
        )
        assert torch.equal(
            torch.as_tensor(own["pixel_values"]), torch.as_tensor(ours["pixel_values"])
        )


@pytest.mark.parametrize(("mode", "orientation"), [("RGB", 6), ("L", 1), ("CMYK", 1)])
def test_a_jpeg_decoded_reduced_gets_the_processors_own_size(
    tiny_checkpoint: Path, mode: str, orientation: int
) -> None:
    """A JPEG handed over undecoded is decoded at a reduced scale; the model still gets
    the grid a full decode gets, upright."""
    import io

    import torch

    from ophthai_desktop.core.inference.preprocess import prepare_image

    photo = _speckled("RGB", (64, 48)).resize((2000, 1300), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    photo.convert(mode).save(buffer, "JPEG", quality=90, exif=exif.tobytes())
    processor = load_processor(tiny_checkpoint, "qwen2_5_vl")
    fitter = processor_fitter(processor, min_pixels=3136, max_pixels=12544)
    assert fitter is not None
    fit, resample = fitter
    kwargs = {"size": {"shortest_edge": 3136, "longest_edge": 12544}}
    full = Image.open(io.BytesIO(buffer.getvalue()))
    full.load()
    own = processor.image_processor(images=[prepare_image(full)], **kwargs)

    opened = Image.open(io.BytesIO(buffer.getvalue()))
    ahead = prepare_image(opened, fit=fit, resample=resample)

    assert max(opened.size) < 2000  # decoded reduced
    upright = (1300, 2000) if orientation == 6 else (2000, 1300)
    assert ahead.mode == "RGB" and ahead.size == fit(upright)
    ours = processor.image_processor(images=[ahead], **kwargs)
    assert torch.equal(
        torch.as_tensor(own["image_grid_thw"]), torch.as_tensor(ours["image_grid_thw"])
    )


def test_no_resize_ahead_for_an_image_processor_of_another_kind() -> None:
    class TorchvisionLike:
        patch_size, merge_size, resample, do_resize = 14, 2, 3, True

    class Processor:
        image_processor = TorchvisionLike()

    assert processor_fitter(Processor(), min_pixels=3136, max_pixels=12544) is None


def test_model_inputs_reuse_the_tokenized_prompt_and_equal_the_processor(
    tiny_checkpoint: Path,
) -> None:
    import torch

    processor = load_processor(tiny_checkpoint, "qwen2_5_vl")
    inputs = ModelInputs(processor)
    prompt = processor.apply_chat_template(
        build_messages(None, "OCT"), add_generation_prompt=True, tokenize=False
    )
    kwargs = {"size": {"shortest_edge": 3136, "longest_edge": 12544}}
    images = [_speckled("RGB", (300, 200)), _speckled("RGB", (301, 199)), _speckled("L", (90, 60))]
    for image in [*images, *images]:  # the second round reuses the first round's prompts
        ours = inputs(prompt, image.convert("RGB"), kwargs)
        theirs = processor(
            text=[prompt], images=[image.convert("RGB")], return_tensors="pt", images_kwargs=kwargs
        )
        assert sorted(ours.keys()) == sorted(theirs.keys())
        for key in theirs:
            assert torch.equal(ours[key], theirs[key]), key
    assert inputs.reused >= 3  # the second round at least

    reused = inputs(prompt, images[0].convert("RGB"), kwargs)
    reused["input_ids"][0, 0] = -1  # what one job's generate does to its inputs...
    again = inputs(prompt, images[0].convert("RGB"), kwargs)
    assert int(again["input_ids"][0, 0]) != -1  # ...the next job does not see


def test_a_model_of_another_type_is_named_not_blamed_on_torchvision(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder holding another kind of model (a text-only LLM, say) was reported as
    "Qwen2VLVideoProcessor requires the Torchvision library": advice to install a
    package, when the folder is the problem."""
    import transformers

    def no_video_backend(*_args: object, **_kwargs: object) -> None:
        raise ImportError("Qwen2VLVideoProcessor requires the Torchvision library")

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", no_video_backend)

    with pytest.raises(ModelUnavailable) as raised:
        load_processor(tiny_checkpoint, "qwen2")

    assert "of type 'qwen2', not a Qwen2.5-VL model" in raised.value.message
    assert "OPHTHAI_MODEL_PATH" in raised.value.message
    assert "orchvision" not in raised.value.message
