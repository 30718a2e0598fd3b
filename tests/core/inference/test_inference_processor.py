"""The image-only processor that stands in where torchvision is missing."""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from pathlib import Path
from typing import Any

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


@pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed"
)
def test_torchvision_missing_as_the_readme_asks_is_no_message_at_each_load(
    tiny_checkpoint: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Not transformers' four lines asking to install torchvision, each time the model
    loads: one debug line."""
    with caplog.at_level(logging.DEBUG):
        load_processor(tiny_checkpoint, "qwen2_5_vl")

    about_torchvision = [r for r in caplog.records if "torchvision" in r.getMessage().lower()]
    assert [r.levelname for r in about_torchvision] == ["DEBUG"]
    assert "\n" not in about_torchvision[0].getMessage()
    assert "requires the Torchvision library" not in caplog.text


def test_another_video_processor_error_is_said_on_one_line(
    tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import transformers

    def failing(*_args: Any, **_kwargs: Any) -> Any:
        raise ImportError("\nthe video decoder is missing.\nSee the docs.\n")

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", failing)
    with caplog.at_level(logging.INFO, logger="ophthai_desktop"):
        load_processor(tiny_checkpoint, "qwen2_5_vl")

    (said,) = [r.getMessage() for r in caplog.records]
    assert said == (
        "video processor unavailable (the video decoder is missing.); "
        "using the image-only processor"
    )


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
        assert fitter is not None and fitter.own_size is None
        fit, resample = fitter.fit, fitter.resample
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
    fit, resample = fitter.fit, fitter.resample
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


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, smart_resize: object) -> str:
    """A stand-in, under ``name``, for a transformers module that holds ``smart_resize``
    (torchvision, which the real torchvision processors import, is not installed here)."""
    module = types.ModuleType(name)
    module.smart_resize = smart_resize  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, name, module)
    return name


def test_no_resize_ahead_for_an_image_processor_of_another_kind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class TorchvisionLike:
        patch_size, merge_size, resample, do_resize = 14, 2, 3, True

    class Processor:
        image_processor = TorchvisionLike()

    assert processor_fitter(Processor(), min_pixels=3136, max_pixels=12544) is None

    # Another model's processor: its smart_resize takes other arguments (GLM-4V's takes
    # the number of frames first), and was called as Qwen2-VL's.
    def other_smart_resize(*_args: object, **_kwargs: object) -> tuple[int, int]:
        raise AssertionError("not Qwen2-VL's smart_resize")

    TorchvisionLike.__module__ = _fake_module(
        monkeypatch, "transformers.models.glm4v.image_processing_pil_glm4v", other_smart_resize
    )
    assert processor_fitter(Processor(), min_pixels=3136, max_pixels=12544) is None


def test_a_large_jpeg_is_decoded_reduced_for_the_torchvision_image_processor_too(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where torchvision is installed (most CUDA workstations), transformers gives
    Qwen2-VL's torchvision image processor, and a 120 MP JPEG was decoded in full (about
    1 GB) for it: it too gets the JPEG decoded at a reduced scale, at the size the full
    image would have; any other image is left to its own resize."""
    import io

    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil_module

    from ophthai_desktop.core.inference import InferenceEngine
    from ophthai_desktop.core.inference import engine as engine_module
    from ophthai_desktop.core.settings import Settings

    torchvision_name = _fake_module(
        monkeypatch,
        "transformers.models.qwen2_vl.image_processing_qwen2_vl",
        pil_module.smart_resize,
    )
    received: list[tuple[int, int]] = []

    class TorchvisionQwen2VL(pil_module.Qwen2VLImageProcessorPil):  # type: ignore[misc]
        """Named as the torchvision one; records the sizes it is given."""

        def preprocess(self, images: Any, *args: Any, **kwargs: Any) -> Any:
            received.extend(image.size for image in images)
            return super().preprocess(images, *args, **kwargs)

    TorchvisionQwen2VL.__module__ = torchvision_name
    real_load_processor = engine_module.load_processor

    def load_as_with_torchvision(folder: Path, model_type: str | None) -> Any:
        processor = real_load_processor(folder, model_type)
        processor.image_processor.__class__ = TorchvisionQwen2VL
        return processor

    monkeypatch.setattr(engine_module, "load_processor", load_as_with_torchvision)
    engine = InferenceEngine(
        Settings(
            data_dir=tmp_path,
            model_path=tiny_checkpoint,
            max_pixels=12544,
            max_new_tokens=2,
            device="cpu",
            _env_file=None,
        )
    )
    engine.load()
    buffer = io.BytesIO()
    _speckled("RGB", (64, 48)).resize((2000, 1300)).save(buffer, "JPEG", quality=90)
    fitted = pil_module.smart_resize(1300, 2000, factor=28, min_pixels=3136, max_pixels=12544)

    opened = Image.open(io.BytesIO(buffer.getvalue()))
    assert engine.generate(opened).completion_tokens == 2

    assert max(opened.size) < 2000  # decoded reduced
    assert received[-1] == (fitted[1], fitted[0])  # the grid of a full decode
    engine.generate(_speckled("RGB", (300, 200)))
    assert received[-1] == (300, 200)  # resized by the processor itself


#: Elongated images within the accepted aspect ratio (200; 28x20000 is refused at
#: ingest), and image budgets, for which Qwen2-VL's smart_resize went over the budget:
#: it keeps each side at least one patch-merge factor (28) and grows a small image to
#: min_pixels by rounding both sides up.
_ELONGATED = [(10000, 100), (4000, 300), (100, 20000), (1000, 5), (3000, 20), (28, 5600)]
_BUDGETS = [(3136, 3136), (3136, 12544), (3136, 50176), (13000, 13000)]  # (min, max)


@pytest.mark.parametrize("image_processor", ["pil", "torchvision"])
def test_the_model_never_gets_more_pixels_than_the_image_budget(
    tiny_checkpoint: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    image_processor: str,
) -> None:
    """OPHTHAI_MAX_PIXELS is what the memory check counts on: a 10000x100 image at a
    budget of 3,136 pixels reached the model at 560x28 (5 times the budget), with the
    PIL/numpy image processor (fitted ahead) and the torchvision one (its own resize)."""
    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil_module

    from ophthai_desktop.core.imaging import fits_the_model
    from ophthai_desktop.core.inference import InferenceEngine
    from ophthai_desktop.core.inference import engine as engine_module
    from ophthai_desktop.core.settings import Settings

    module_name = pil_module.__name__
    if image_processor == "torchvision":
        module_name = _fake_module(
            monkeypatch,
            "transformers.models.qwen2_vl.image_processing_qwen2_vl",
            pil_module.smart_resize,
        )
    grids: list[tuple[int, int, int]] = []

    class Recording(pil_module.Qwen2VLImageProcessorPil):  # type: ignore[misc]
        """Records the grid of the pixel values it gives the model."""

        def preprocess(self, images: Any, *args: Any, **kwargs: Any) -> Any:
            output = super().preprocess(images, *args, **kwargs)
            grids.append(tuple(int(v) for v in output["image_grid_thw"][-1]))
            return output

    Recording.__module__ = module_name
    real_load_processor = engine_module.load_processor

    def load_recording(folder: Path, model_type: str | None) -> Any:
        processor = real_load_processor(folder, model_type)
        processor.image_processor.__class__ = Recording
        return processor

    monkeypatch.setattr(engine_module, "load_processor", load_recording)
    patch_area = 14 * 14
    for min_pixels, max_pixels in _BUDGETS:
        engine = InferenceEngine(
            Settings(
                data_dir=tmp_path,
                model_path=tiny_checkpoint,
                min_pixels=min_pixels,
                max_pixels=max_pixels,
                max_new_tokens=1,
                device="cpu",
                _env_file=None,
            )
        )
        engine.load()
        for size in _ELONGATED:
            assert fits_the_model(*size)
            grids.clear()
            engine.generate(Image.new("L", size, 120))
            _t, rows, columns = grids[-1]
            assert rows * columns * patch_area <= max_pixels, (size, max_pixels, grids[-1])
            # As close to the image's aspect as the patch grid allows.
            assert (columns >= rows) == (size[0] >= size[1]), (size, grids[-1])
        engine.unload()


def test_the_fitted_size_steps_down_on_the_side_that_keeps_the_aspect(
    tiny_checkpoint: Path,
) -> None:
    processor = load_processor(tiny_checkpoint, "qwen2_5_vl")
    fitter = processor_fitter(processor, min_pixels=3136, max_pixels=3136)
    assert fitter is not None

    assert fitter.fit((10000, 100)) == (112, 28)  # smart_resize: (560, 28)
    assert fitter.fit((100, 10000)) == (28, 112)
    assert fitter.fit((300, 200)) == (56, 28)  # smart_resize's, within the budget already
    for size in _ELONGATED:
        fitted = fitter.fit(size)
        assert fitted is not None and fitted[0] % 28 == 0 and fitted[1] % 28 == 0
        assert fitted[0] * fitted[1] <= 3136


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
