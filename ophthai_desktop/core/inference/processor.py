"""Load the model's processor, with an image-only fallback for Qwen2-VL models.

``AutoProcessor`` builds Qwen2.5-VL's video processor too, and that needs torchvision,
which has no working CPU build to go with the CPU torch. The app only sends images, so
when the video processor is what fails, the processor is built from the tokenizer, the
PIL/numpy image processor and the chat template alone.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any, NamedTuple

from ophthai_desktop.core.errors import ModelUnavailable
from ophthai_desktop.core.inference.preprocess import SizeFitter

log = logging.getLogger(__name__)

#: Model types whose processor the fallback can build.
IMAGE_ONLY_MODEL_TYPES = frozenset({"qwen2_5_vl", "qwen2_vl"})


def load_processor(model_dir: Path, model_type: str | None) -> Any:
    """The processor for the model in ``model_dir`` (a local folder; nothing is fetched).

    Raises:
        ModelUnavailable: Neither ``AutoProcessor`` nor the fallback could build one.
    """
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(str(model_dir), local_files_only=True)
    except (ImportError, ValueError, OSError, TypeError) as exc:
        if _is_video_backend_error(exc) and model_type not in IMAGE_ONLY_MODEL_TYPES:
            # Not "install torchvision": this model is not one the app knows how to run.
            raise ModelUnavailable(
                f"The model in {model_dir} is of type {model_type!r}, not a Qwen2.5-VL "
                "model ('qwen2_5_vl'), and no processor for it can be loaded here. Point "
                "OPHTHAI_MODEL_PATH to OctoMed-7B or another Qwen2.5-VL model."
            ) from exc
        if not _is_video_backend_error(exc):
            raise ModelUnavailable(f"The model's processor cannot be loaded: {exc}") from exc
        _say_video_processor_unavailable(exc)
    try:
        return build_image_only_processor(model_dir)
    except (ImportError, ValueError, OSError, TypeError) as exc:
        raise ModelUnavailable(f"The model's processor cannot be loaded: {exc}") from exc


def _say_video_processor_unavailable(exc: BaseException) -> None:
    """One line in the log, at each load, for the video processor not built.

    transformers' ``requires_backends`` raises its four-line "requires the Torchvision
    library but it was not found ... install" text. Torchvision missing is what the
    README asks for (images only), so that case is a debug line of ours; any other
    video error is said on one line, its first.
    """
    if "torchvision" in str(exc).lower() and importlib.util.find_spec("torchvision") is None:
        log.debug("torchvision is not installed, as expected: the image-only processor is used")
        return
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    log.info("video processor unavailable (%s); using the image-only processor", first)


def _is_video_backend_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).lower()
        if "torchvision" in text or "video" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def build_image_only_processor(model_dir: Path) -> Any:
    """A Qwen2.5-VL processor with the tokenizer, PIL image processor and chat template."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    image_processor = _pil_image_processor_class().from_pretrained(
        str(model_dir), local_files_only=True
    )
    chat_template = _read_chat_template(model_dir) or getattr(tokenizer, "chat_template", None)
    if not chat_template:
        raise ValueError(f"no chat template in {model_dir}")
    return image_only_processor_class()(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template
    )


def _pil_image_processor_class() -> Any:
    try:  # transformers 5: the PIL/numpy backend has its own class
        from transformers import Qwen2VLImageProcessorPil

        return Qwen2VLImageProcessorPil
    except ImportError:  # transformers 4: the "slow" processor is the PIL/numpy one
        from transformers import Qwen2VLImageProcessor

        return Qwen2VLImageProcessor


def _read_chat_template(model_dir: Path) -> str | None:
    jinja = model_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    as_json = model_dir / "chat_template.json"
    if as_json.is_file():
        template = json.loads(as_json.read_text(encoding="utf-8")).get("chat_template")
        return template if isinstance(template, str) else None
    return None


@functools.cache
def image_only_processor_class() -> type:
    """``Qwen2_5_VLProcessor`` without its video processor (built on first use)."""
    from transformers import Qwen2_5_VLProcessor

    class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
        """Qwen2.5-VL's processor for images and text only."""

        # transformers 4 reads the sub-processors from ``attributes``, 5 from ``__init__``.
        attributes = ["image_processor", "tokenizer"]

        def __init__(
            self,
            image_processor: Any = None,
            tokenizer: Any = None,
            chat_template: str | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(
                image_processor, tokenizer, None, chat_template=chat_template, **kwargs
            )

    return ImageOnlyQwen2_5_VLProcessor


class ImageFit(NamedTuple):
    """How :func:`~ophthai_desktop.core.inference.preprocess.prepare_image` sizes an
    image ahead of the model's image processor (see :func:`processor_fitter`)."""

    #: The size the model reads an image of a given size at: the image processor's
    #: own, stepped down where that goes over the image budget (:func:`within_budget`).
    fit: SizeFitter
    #: The image processor's filter, as a Pillow resampling filter.
    resample: int
    #: The size the image processor's own resize gives, for one that resamples its own
    #: way (torchvision's; ``prepare_image``'s ``own_size``); None for the PIL/numpy one,
    #: whose resize ahead gives its very pixels.
    own_size: SizeFitter | None


def within_budget(
    size: tuple[int, int], fitted: tuple[int, int], *, factor: int, max_pixels: int
) -> tuple[int, int]:
    """``fitted`` (a ``(width, height)`` of multiples of ``factor`` that ``smart_resize``
    gave for ``size``) stepped down, one ``factor`` at a time, to at most ``max_pixels``.

    ``smart_resize`` rounds each side to a multiple of ``factor`` after scaling, and no
    side below one ``factor``: a very elongated image came out at up to 7 times the
    budget (10000x100 at 3,136 pixels: 560x28), and one grown to ``min_pixels`` near the
    budget went over it too. ``OPHTHAI_MAX_PIXELS`` is what the memory check counts on,
    so each step takes a ``factor`` off the side that leaves the aspect closest to
    ``size``'s.
    """
    width, height = fitted
    aspect = math.log(size[0] / size[1])
    while width * height > max_pixels and (width > factor or height > factor):
        narrower = (width - factor, height) if width > factor else None
        lower = (width, height - factor) if height > factor else None
        steps = [step for step in (narrower, lower) if step is not None]
        width, height = min(steps, key=lambda step: abs(math.log(step[0] / step[1]) - aspect))
    return width, height


def processor_fitter(processor: Any, *, min_pixels: int, max_pixels: int) -> ImageFit | None:
    """The size the model reads an image at, for the processor's image processor, and
    its filter.

    Only for Qwen2-VL's image processors, whose size is ``smart_resize``'s, here kept
    within ``max_pixels`` (:func:`within_budget`). The PIL/numpy one resizes with Pillow
    with that filter, so resizing any image beforehand gives the very same pixels (and
    the processor then has nothing left to resize). The torchvision one (transformers
    5's default where torchvision is installed, as on most CUDA workstations;
    transformers 4's "fast" one) resamples differently: it does its own, except for a
    JPEG decoded at a reduced scale, which is handed over at the size it would give the
    full image, so that the model reads the same grid, and an image its own resize
    would take over the budget. Any other image processor gets ``None``: it does its
    own, from a full decode.
    """
    image_processor = getattr(processor, "image_processor", None)
    module = sys.modules.get(type(image_processor).__module__)
    smart_resize = getattr(module, "smart_resize", None)
    # Other models' processors have a smart_resize of their own, of other arguments.
    if module is None or not module.__name__.startswith(_QWEN2_VL) or smart_resize is None:
        return None
    patch = getattr(image_processor, "patch_size", None)
    merge = getattr(image_processor, "merge_size", None)
    resample = getattr(image_processor, "resample", None)
    if not (getattr(image_processor, "do_resize", False) and patch and merge and resample):
        return None
    factor = int(patch) * int(merge)

    def own(size: tuple[int, int]) -> tuple[int, int] | None:
        width, height = size
        try:
            new_height, new_width = smart_resize(
                height, width, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels
            )
        except ValueError:  # an extreme aspect ratio: the processor will say why
            return None
        return int(new_width), int(new_height)

    def fit(size: tuple[int, int]) -> tuple[int, int] | None:
        fitted = own(size)
        if fitted is None:
            return None
        return within_budget(size, fitted, factor=factor, max_pixels=max_pixels)

    pillow = "image_processing_pil_" in module.__name__
    return ImageFit(fit, int(resample), own_size=None if pillow else own)


#: The package of Qwen2-VL's image processors (Qwen2.5-VL's, OctoMed's, are those).
_QWEN2_VL = "transformers.models.qwen2_vl."


class ModelInputs:
    """The processor's output for a prompt and an image, tokenizing each prompt once.

    The text half of the output (``input_ids``, ``attention_mask``, ...) depends only on
    the prompt and on how many tokens the image takes, which the image processor's
    ``image_grid_thw`` gives; tokenizing the same long prompt again is most of the
    processor's time. So the first call for a (prompt, grid) runs the whole processor
    and keeps its text half; later calls run only the image processor and put the two
    together. That first call also checks that the image processor alone gives the
    image half the whole processor gave, bit for bit; where it does not (a processor
    that passes its own image settings), every call runs the whole processor.

    Args:
        processor: The model's processor (``load_processor``).
        capacity: (prompt, grid) pairs kept; clinicians' free questions are not kept
            forever.
    """

    def __init__(self, processor: Any, capacity: int = 32) -> None:
        self._processor = processor
        self._capacity = capacity
        self._text: dict[tuple[str, tuple[int, ...]], dict[str, Any]] = {}
        self._image_alone_matches: bool | None = None
        #: Calls answered with a prompt tokenized earlier.
        self.reused = 0

    def __call__(self, prompt: str, image: Any, images_kwargs: dict[str, Any]) -> Any:
        """A ``BatchFeature`` on the CPU, as ``processor(text=[prompt], images=[image])``."""
        image_processor = getattr(self._processor, "image_processor", None)
        if image_processor is None or self._image_alone_matches is False:
            return self._whole(prompt, image, images_kwargs)
        image_part = image_processor(images=[image], return_tensors="pt", **images_kwargs)
        grid = image_part.get("image_grid_thw")
        if grid is None:
            self._image_alone_matches = False
            return self._whole(prompt, image, images_kwargs)
        key = (prompt, tuple(int(v) for v in grid.reshape(-1).tolist()))
        text_part = self._text.get(key)
        if text_part is None:
            whole = self._whole(prompt, image, images_kwargs)
            if self._image_alone_matches is None:
                self._image_alone_matches = _same_tensors(whole, image_part)
            if self._image_alone_matches and len(self._text) < self._capacity:
                self._text[key] = {k: v for k, v in whole.items() if k not in image_part}
            return whole
        from transformers import BatchFeature

        self.reused += 1
        # Copies: generate() must not be able to change what the next job starts from.
        return BatchFeature({**{k: v.clone() for k, v in text_part.items()}, **image_part})

    def _whole(self, prompt: str, image: Any, images_kwargs: dict[str, Any]) -> Any:
        return self._processor(
            text=[prompt], images=[image], return_tensors="pt", images_kwargs=images_kwargs
        )


def _same_tensors(whole: Any, part: Any) -> bool:
    import torch

    return all(
        key in whole
        and isinstance(whole[key], torch.Tensor)
        and isinstance(value, torch.Tensor)
        and whole[key].dtype == value.dtype
        and torch.equal(whole[key], value)
        for key, value in part.items()
    )
