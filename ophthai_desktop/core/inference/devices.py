"""Device choice, precision, and the memory a model needs against what is free.

Functions here that take a device import torch lazily; the parameter counting reads
only ``config.json`` and safetensors headers, so it runs without torch.
"""

from __future__ import annotations

import json
import logging
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ophthai_desktop.core.errors import ModelUnavailable

log = logging.getLogger(__name__)

#: Bytes one parameter takes in each precision the engine loads with.
BYTES_PER_PARAMETER: dict[str, float] = {
    "float32": 4.0,
    "bfloat16": 2.0,
    "float16": 2.0,
    "8bit": 1.0,
    "4bit": 0.5,
}

#: Margin on top of the weights, in proportion to them: activations, the KV cache of
#: one analysis and allocator slack. Measured needs of a 7B VLM with a 262k-pixel image
#: and 1k new tokens stay well inside it.
OVERHEAD_FRACTION = 0.10
#: The CUDA context and library workspaces, on a CUDA device only (a CPU or MPS load
#: has none: the tiny test checkpoint's estimate on CPU was almost all this).
CUDA_CONTEXT_BYTES = 512 * 1024**2

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
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
    if not _DEVICE_RE.match(value):
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


def estimate_memory_bytes(parameters: int, precision: str, *, device: str) -> int:
    """Memory to load ``parameters`` in ``precision`` (a :data:`BYTES_PER_PARAMETER` key)
    on ``device`` (a torch device string) and run an analysis."""
    weights = parameters * BYTES_PER_PARAMETER[precision]
    context = CUDA_CONTEXT_BYTES if device.startswith("cuda") else 0
    return int(weights * (1 + OVERHEAD_FRACTION) + context)


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
