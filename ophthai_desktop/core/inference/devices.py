"""Device choice, precision, and the memory a model needs against what is free.

Functions here that take a device import torch lazily; the parameter counting reads
only ``config.json`` and safetensors headers, so it runs without torch.
"""

from __future__ import annotations

import json
import logging
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ophthai_desktop.core.errors import ModelUnavailable
from ophthai_desktop.core.settings import DEVICE_PATTERN

log = logging.getLogger(__name__)

#: Bytes one parameter takes in each precision the engine loads with.
BYTES_PER_PARAMETER: dict[str, float] = {
    "float32": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "8bit": 1.0,
    "4bit": 0.5,
}

#: What an analysis needs over the weights, in proportion to them, for a model whose
#: config lacks the fields :func:`runtime_memory_bytes` reads (a fallback: 1.7 GB for
#: OctoMed-7B in bf16, whatever the image budget and token cap).
OVERHEAD_FRACTION = 0.10
#: Margin on :func:`runtime_memory_bytes`' counted tensors, in proportion to them: what
#: it leaves out (cuBLAS and cuDNN workspaces the allocator hands out, the sampler's
#: float32 logits, rotary tables, the allocator's block rounding). bench/gpu_decode.py's
#: run of OctoMed-7B's configuration counts to 0.15 GB over the weights and peaked about
#: 0.3 GB over them (see the README's memory estimate), so the margin is as large again.
RUNTIME_MARGIN_FRACTION = 1.0
#: Elements one position (a prompt token, or an image patch in the vision encoder) holds
#: in a transformer block at most, in units of the block's hidden and MLP widths: the
#: residual stream, its norm, q, k and v, float32 copies of q and k for the rotary
#: embedding (two elements each at 16 bits), the attention's output and projection (ten
#: hidden-sized vectors), and the MLP's gate, up and their product (three
#: intermediate-sized ones). The attention and MLP halves do not hold theirs at once, so
#: the sum is an upper bound. Attention runs in SDPA kernels that hold no
#: position x position matrix.
HIDDEN_VECTORS_PER_POSITION = 10
INTERMEDIATE_VECTORS_PER_POSITION = 3
#: The CUDA context and library workspaces, on a CUDA device only (a CPU or MPS load
#: has none: the tiny test checkpoint's estimate on CPU was almost all this).
CUDA_CONTEXT_BYTES = 512 * 1024**2

_SAFETENSORS_DTYPE_BYTES = {
    "F64": 8,
    "I64": 8,
    "F32": 4,
    "I32": 4,
    "BF16": 2,
    "F16": 2,
    "I16": 2,
    "U8": 1,
    "I8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


@dataclass(frozen=True)
class DevicePlan:
    """Where and how a model is loaded.

    Attributes:
        device: A torch device string: ``"cuda:0"``, ``"mps"`` or ``"cpu"``.
        dtype: Compute dtype name: ``"bfloat16"`` on GPUs, ``"float32"`` on CPU.
        quantization: ``"none"``, ``"8bit"`` or ``"4bit"``.
    """

    device: str
    dtype: str
    quantization: str

    @property
    def precision(self) -> str:
        """The key into :data:`BYTES_PER_PARAMETER` for the weights."""
        return self.dtype if self.quantization == "none" else self.quantization


def resolve_device(setting: str) -> str:
    """Turn the ``device`` setting into a torch device string.

    ``auto`` picks cuda, then mps, then cpu. An explicit choice is honoured or refused.

    Raises:
        ModelUnavailable: The setting is malformed or names a device this machine lacks.
    """
    value = setting.strip().lower()
    if not DEVICE_PATTERN.fullmatch(value):
        raise ModelUnavailable(
            f"OPHTHAI_DEVICE is {setting!r}; use auto, cuda, cuda:N, mps or cpu.", field="device"
        )
    import torch

    if value == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        if _mps_available():
            return "mps"
        return "cpu"
    if value.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelUnavailable(
                f"OPHTHAI_DEVICE is {setting!r} but CUDA is not available here (no NVIDIA GPU, "
                "driver, or CUDA build of torch). Use OPHTHAI_DEVICE=auto or cpu.",
                field="device",
            )
        index = int(value.split(":", 1)[1]) if ":" in value else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise ModelUnavailable(
                f"OPHTHAI_DEVICE is {setting!r} but this machine has {count} CUDA device(s).",
                field="device",
            )
        return f"cuda:{index}"
    if value == "mps" and not _mps_available():
        raise ModelUnavailable(
            "OPHTHAI_DEVICE is 'mps' but Apple Metal is not available here.", field="device"
        )
    return value


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def dtype_for_device(device: str) -> str:
    """The compute dtype for ``device``.

    bfloat16 on CUDA and MPS. float32 on CPU: bfloat16 matmuls are slow or missing on
    many desktop CPUs, and float32 gives the same greedy output on every machine.
    """
    return "float32" if device == "cpu" else "bfloat16"


def plan_device(device_setting: str, quantization: str) -> DevicePlan:
    """Resolve the device, dtype and quantization from the settings.

    Raises:
        ModelUnavailable: The device is unavailable, or quantization was asked for where
            it cannot run (it needs CUDA and the ``bitsandbytes`` package).
    """
    device = resolve_device(device_setting)
    if quantization != "none":
        if not device.startswith("cuda"):
            raise ModelUnavailable(
                f"OPHTHAI_QUANTIZATION={quantization} needs a CUDA GPU, but the model would run "
                f"on {device}. Set OPHTHAI_QUANTIZATION=none.",
                field="quantization",
            )
        import importlib.util

        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelUnavailable(
                f"OPHTHAI_QUANTIZATION={quantization} needs the bitsandbytes package "
                "(pip install 'ophthai-desktop[quant]').",
                field="quantization",
            )
    return DevicePlan(device=device, dtype=dtype_for_device(device), quantization=quantization)


# Parameter counting ------------------------------------------------------------------


def count_parameters(model_dir: Path) -> int | None:
    """The model's parameter count, or None when it cannot be told.

    Reads the safetensors headers (exact; a few kilobytes per shard), else the index's
    ``metadata.total_size`` divided by the stored dtype's width, else counts from the
    config's dimensions.
    """
    try:
        count = _parameters_from_safetensors(model_dir)
        if count:
            return count
    except (OSError, ValueError, struct.error) as exc:
        log.warning("could not read safetensors headers in %s: %s", model_dir, exc)
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    from_index = _parameters_from_index(model_dir, config)
    return from_index or parameters_from_config(config)


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        return [model_dir / name for name in sorted(set(weight_map.values()))]
    single = model_dir / "model.safetensors"
    return [single] if single.is_file() else []


def _parameters_from_safetensors(model_dir: Path) -> int | None:
    files = _weight_files(model_dir)
    if not files:
        return None
    total = 0
    for path in files:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 * 1024**2:  # a header is kilobytes; anything else is not safetensors
                raise ValueError(f"implausible safetensors header in {path.name}")
            header = json.loads(handle.read(length))
        for name, entry in header.items():
            if name != "__metadata__":
                total += math.prod(entry["shape"])
    return total


def _parameters_from_index(model_dir: Path, config: dict[str, Any]) -> int | None:
    index = model_dir / "model.safetensors.index.json"
    try:
        total_size = json.loads(index.read_text(encoding="utf-8"))["metadata"]["total_size"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    stored = str(config.get("torch_dtype") or config.get("dtype") or "bfloat16")
    width = {"float32": 4, "float16": 2, "bfloat16": 2}.get(stored, 2)
    return int(total_size) // width


def parameters_from_config(config: dict[str, Any]) -> int | None:
    """Count parameters from a Qwen2.5-VL style config's dimensions (approximate otherwise)."""
    text = config.get("text_config") or config
    try:
        hidden = int(text["hidden_size"])
        layers = int(text["num_hidden_layers"])
        vocab = int(text["vocab_size"])
        intermediate = int(text.get("intermediate_size") or 4 * hidden)
        heads = int(text.get("num_attention_heads") or 1)
        kv_heads = int(text.get("num_key_value_heads") or heads)
    except (KeyError, TypeError, ValueError):
        return None
    head_dim = int(text.get("head_dim") or hidden // heads)
    kv_dim = kv_heads * head_dim
    attention = hidden * heads * head_dim + heads * head_dim  # q with bias
    attention += 2 * (hidden * kv_dim + kv_dim)  # k, v with bias
    attention += heads * head_dim * hidden  # o
    per_layer = attention + 3 * hidden * intermediate + 2 * hidden
    tied = bool(config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))
    total = layers * per_layer + hidden + vocab * hidden * (1 if tied else 2)
    vision = config.get("vision_config")
    if isinstance(vision, dict):
        total += _vision_parameters(vision, hidden)
    return total


def _vision_parameters(vision: dict[str, Any], text_hidden: int) -> int:
    try:
        hidden = int(vision["hidden_size"])
        depth = int(vision["depth"])
    except (KeyError, TypeError, ValueError):
        return 0
    intermediate = int(vision.get("intermediate_size") or 4 * hidden)
    patch = int(vision.get("patch_size") or 14)
    temporal = int(vision.get("temporal_patch_size") or 2)
    channels = int(vision.get("in_chans") or vision.get("in_channels") or 3)
    merge = int(vision.get("spatial_merge_size") or 2)
    out_hidden = int(vision.get("out_hidden_size") or text_hidden)
    per_block = 2 * hidden  # two RMSNorms
    per_block += hidden * 3 * hidden + 3 * hidden + hidden * hidden + hidden  # qkv, proj
    per_block += 2 * (hidden * intermediate + intermediate) + intermediate * hidden + hidden  # MLP
    merged = hidden * merge * merge
    merger = hidden + merged * merged + merged + merged * out_hidden + out_hidden
    return channels * temporal * patch * patch * hidden + depth * per_block + merger


# Memory ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    """The longest analysis the app asks for: what the KV cache and activations are
    sized for.

    Attributes:
        text_tokens: The prompt's text tokens at most, the image's left out
            (:func:`~ophthai_desktop.core.inference.prompt.longest_prompt_tokens`).
        max_pixels: The image budget (``OPHTHAI_MAX_PIXELS``): the processor resizes an
            image to at most this many pixels.
        max_new_tokens: The generation cap (``OPHTHAI_MAX_NEW_TOKENS``).
    """

    text_tokens: int
    max_pixels: int
    max_new_tokens: int


def runtime_memory_bytes(
    config: Mapping[str, Any], workload: Workload, *, dtype: str
) -> int | None:
    """Memory an analysis of ``workload`` needs over the weights, from a Qwen2-VL or
    Qwen2.5-VL style ``config`` (``config.json``'s content), with activations and the KV
    cache in ``dtype`` (the compute dtype; a quantized model's too). None when the
    config lacks a field it needs: the caller falls back to :data:`OVERHEAD_FRACTION`.

    The sum of:

    - the KV cache at the end of the longest generation: 2 (K and V) x layers x KV heads
      x head_dim x (text tokens + image tokens + new tokens) x the dtype's bytes;
    - the larger of the vision encoder's activations for one image at
      ``max_pixels`` (``max_pixels / patch_size²`` patches, each holding
      :data:`HIDDEN_VECTORS_PER_POSITION` x the encoder's hidden size +
      :data:`INTERMEDIATE_VECTORS_PER_POSITION` x its MLP width elements, plus the
      patch's float32 pixels) and the language model's prefill activations for the
      prompt (the same per token, at its own widths). The encoder runs and frees its
      activations before the prefill, so only the larger counts;
    - :data:`RUNTIME_MARGIN_FRACTION` of those two.
    """
    width = BYTES_PER_PARAMETER[dtype]
    text = config.get("text_config") or config
    vision = config.get("vision_config")
    if not isinstance(text, Mapping) or not isinstance(vision, Mapping):
        return None
    try:
        layers = int(text["num_hidden_layers"])
        hidden = int(text["hidden_size"])
        intermediate = int(text["intermediate_size"])
        heads = int(text["num_attention_heads"])
        kv_heads = int(text.get("num_key_value_heads") or heads)
        head_dim = int(text.get("head_dim") or hidden // heads)
        patch = int(vision["patch_size"])
        merge = int(vision["spatial_merge_size"])
        pixels_per_patch = (
            int(vision.get("in_chans") or vision.get("in_channels") or 3)
            * int(vision.get("temporal_patch_size") or 2)
            * patch
            * patch
        )
        if "embed_dim" in vision:  # Qwen2-VL: hidden_size is the merger's output there
            vision_hidden = int(vision["embed_dim"])
            vision_intermediate = int(float(vision["mlp_ratio"]) * vision_hidden)
        else:
            vision_hidden = int(vision["hidden_size"])
            vision_intermediate = int(vision["intermediate_size"])
        patches = workload.max_pixels // (patch * patch)
        image_tokens = patches // (merge * merge)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    prompt_tokens = workload.text_tokens + image_tokens
    kv_cache = 2 * layers * kv_heads * head_dim * (prompt_tokens + workload.max_new_tokens) * width
    encoder = patches * (
        _per_position(vision_hidden, vision_intermediate) * width + 4 * pixels_per_patch
    )
    prefill = prompt_tokens * _per_position(hidden, intermediate) * width
    counted = kv_cache + max(encoder, prefill)
    return int(counted * (1 + RUNTIME_MARGIN_FRACTION))


def _per_position(hidden: int, intermediate: int) -> int:
    return HIDDEN_VECTORS_PER_POSITION * hidden + INTERMEDIATE_VECTORS_PER_POSITION * intermediate


def estimate_memory_bytes(
    parameters: int, precision: str, *, device: str, runtime_bytes: int | None = None
) -> int:
    """Memory to load ``parameters`` in ``precision`` (a :data:`BYTES_PER_PARAMETER` key)
    on ``device`` (a torch device string) and run an analysis.

    Args:
        runtime_bytes: What an analysis needs over the weights
            (:func:`runtime_memory_bytes`); None when it cannot be derived: then
            :data:`OVERHEAD_FRACTION` of the weights.
    """
    weights = parameters * BYTES_PER_PARAMETER[precision]
    runtime = weights * OVERHEAD_FRACTION if runtime_bytes is None else runtime_bytes
    context = CUDA_CONTEXT_BYTES if device.startswith("cuda") else 0
    return int(weights + runtime + context)


def free_memory_bytes(device: str) -> int | None:
    """Free memory for a model on ``device``: GPU memory on CUDA, available RAM otherwise.

    MPS shares system memory, so it reports available RAM too. None when unknown.
    """
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    return available_ram_bytes()


def available_ram_bytes() -> int | None:
    """Available system memory (Linux ``MemAvailable``, else psutil), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # present with accelerate; not a dependency of ours
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def used_memory_bytes(model: Any, device: str) -> int:
    """Memory the loaded model holds: allocated CUDA memory, else its tensors' bytes."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.memory_allocated(torch.device(device)))
    tensors = [*model.parameters(), *model.buffers()]
    return int(sum(t.numel() * t.element_size() for t in tensors))
