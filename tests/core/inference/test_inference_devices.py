"""Device choice, parameter counting and the memory estimate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ophthai_desktop.core.errors import ModelUnavailable
from ophthai_desktop.core.inference import devices

#: Qwen2.5-VL-7B-Instruct's dimensions (OctoMed-7B's base), as in its config.json.
QWEN25_VL_7B = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
    "vision_config": {
        "depth": 32,
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "temporal_patch_size": 2,
    },
}


def test_config_count_matches_the_weights(tiny_checkpoint: Path) -> None:
    config = json.loads((tiny_checkpoint / "config.json").read_text())

    from_weights = devices.count_parameters(tiny_checkpoint)

    assert from_weights is not None and from_weights > 100_000
    assert devices.parameters_from_config(config) == from_weights


def test_config_count_of_the_7b_model() -> None:
    # Qwen2.5-VL-7B has 8.29 billion parameters (the vision tower included).
    assert devices.parameters_from_config(QWEN25_VL_7B) == pytest.approx(8.29e9, rel=0.005)


def test_count_from_config_when_weights_are_unreadable(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text((tiny_checkpoint / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 16)
    config = json.loads((tiny_checkpoint / "config.json").read_text())

    assert devices.count_parameters(tmp_path) == devices.parameters_from_config(config)


def test_estimate_scales_with_precision() -> None:
    parameters = 8_000_000_000
    context = devices.CUDA_CONTEXT_BYTES
    full = devices.estimate_memory_bytes(parameters, "float32", device="cuda:0")
    half = devices.estimate_memory_bytes(parameters, "bfloat16", device="cuda:0")
    four_bit = devices.estimate_memory_bytes(parameters, "4bit", device="cuda:0")

    assert full > 4 * parameters
    assert half > 2 * parameters
    assert (full - context) == pytest.approx(2 * (half - context))
    assert (half - context) == pytest.approx(4 * (four_bit - context))
    # bf16 7B needs a 24 GB GPU; 4-bit fits in 8 GB.
    assert 16e9 < devices.estimate_memory_bytes(8_290_000_000, "bfloat16", device="cuda") < 24e9
    assert devices.estimate_memory_bytes(8_290_000_000, "4bit", device="cuda") < 8e9


def test_the_estimate_counts_a_cuda_context_only_on_cuda(tiny_checkpoint: Path) -> None:
    """The tiny checkpoint on CPU was estimated at 538 MB, nearly all of it a fixed
    overhead for the CUDA context (found by review); the 7B estimate on CUDA stays where
    bench/gpu_decode.py measured it (18.8 GB against a 16.9 GB peak in bf16)."""
    tiny = devices.count_parameters(tiny_checkpoint)
    assert tiny is not None
    on_cpu = devices.estimate_memory_bytes(tiny, "float32", device="cpu")
    assert on_cpu < 10 * 1024**2
    assert on_cpu == devices.estimate_memory_bytes(tiny, "float32", device="mps")
    on_cuda = devices.estimate_memory_bytes(tiny, "float32", device="cuda:0")
    assert on_cuda == on_cpu + devices.CUDA_CONTEXT_BYTES
    seven_b = devices.estimate_memory_bytes(8_292_166_656, "bfloat16", device="cuda:0")
    assert round(seven_b / 1e9, 1) == 18.8


#: The longest analysis at the default settings: 3,304 text tokens (the prompt's
#: characters with a 2,000-character question and the template's 64), a 262,144-pixel
#: image, 1,024 new tokens.
LONGEST = devices.Workload(text_tokens=3304, max_pixels=262_144, max_new_tokens=1024)


def test_the_longest_prompt_is_counted_from_the_prompt() -> None:
    from ophthai_desktop.core.inference.prompt import longest_prompt_tokens

    # 1,122 characters of system prompt, 2,000 of question, 118 of the rest of the user
    # turn (with "OCTA"), 64 for the template.
    assert longest_prompt_tokens() == LONGEST.text_tokens


def test_runtime_need_of_the_tiny_checkpoint(tiny_checkpoint: Path) -> None:
    """By hand, float32 (the CPU's dtype), tiny config: text 2 layers, hidden 64,
    4 heads (head_dim 16), 2 KV heads, MLP 128; vision hidden 32, MLP 64, patch 14,
    merge 2.

    - 262,144 // 14² = 1,337 patches; // 2² = 334 image tokens; prompt 3,304 + 334 =
      3,638 tokens; with 1,024 new, 4,662.
    - KV cache: 2 x 2 layers x 2 heads x 16 x 4 B = 512 B a token; x 4,662 = 2,386,944.
    - Prefill: (10 x 64 + 3 x 128) x 4 B = 4,096 B a token; x 3,638 = 14,901,248.
    - Vision: (10 x 32 + 3 x 64) x 4 B + 3 x 2 x 14 x 14 x 4 B of pixels = 6,752 B a
      patch; x 1,337 = 9,027,424 (less than the prefill: not counted).
    - (2,386,944 + 14,901,248) x 2 (the margin) = 34,576,384.
    """
    config = json.loads((tiny_checkpoint / "config.json").read_text())

    assert devices.runtime_memory_bytes(config, LONGEST, dtype="float32") == 34_576_384
    # bf16 halves the cache and the activations, not the float32 pixels: the vision
    # encoder's (512 x 2 + 4,704) x 1,337 = 7,658,336 is then more than the prefill's
    # 2,048 x 3,638 = 7,450,624, and counts: (1,193,472 + 7,658,336) x 2 = 17,703,616.
    assert devices.runtime_memory_bytes(config, LONGEST, dtype="bfloat16") == 17_703_616


def test_runtime_need_of_a_7b_like_config() -> None:
    """By hand, bf16, Qwen2.5-VL-7B (OctoMed-7B): text 28 layers, hidden 3,584, 28 heads
    (head_dim 128), 4 KV heads, MLP 18,944; vision hidden 1,280, MLP 3,420.

    - KV cache: 2 x 28 x 4 x 128 x 2 B = 57,344 B a token; x 4,662 = 267,337,728
      (0.27 GB).
    - Prefill: (10 x 3,584 + 3 x 18,944) x 2 B = 185,344 B a token; x 3,638 =
      674,281,472.
    - Vision: (10 x 1,280 + 3 x 3,420) x 2 B + 4,704 B of pixels = 50,824 B a patch;
      x 1,337 = 67,951,688 (less than the prefill: not counted).
    - (267,337,728 + 674,281,472) x 2 = 1,883,238,400: 1.88 GB over the weights.
    """
    runtime = devices.runtime_memory_bytes(QWEN25_VL_7B, LONGEST, dtype="bfloat16")

    assert runtime == 1_883_238_400
    # 16.58 GB of weights + 1.88 GB + the CUDA context's 0.54 GB.
    seven_b = devices.estimate_memory_bytes(
        8_292_166_656, "bfloat16", device="cuda:0", runtime_bytes=runtime
    )
    assert seven_b == 16_584_333_312 + 1_883_238_400 + devices.CUDA_CONTEXT_BYTES
    # 4-bit weights keep a bf16 cache and activations: the same need over the weights
    # (a tenth of the 4-bit weights, as before, was 0.41 GB).
    four_bit = devices.estimate_memory_bytes(
        8_292_166_656, "4bit", device="cuda:0", runtime_bytes=runtime
    )
    assert four_bit == 4_146_083_328 + runtime + devices.CUDA_CONTEXT_BYTES


def test_runtime_need_against_the_measured_peak() -> None:
    """bench/gpu_decode.py's run (README): a 512 x 496 image resized to 504 x 504 =
    254,016 pixels (1,296 patches, 324 image tokens), about 270 text tokens, 128 new
    tokens; torch's allocated peak was about 0.3 GB over the 16.58 GB of weights.
    Counted: KV 57,344 B x 722 = 41.4 MB + prefill 185,344 B x 594 = 110.1 MB; with the
    margin the estimate covers the peak."""
    run = devices.Workload(text_tokens=270, max_pixels=254_016, max_new_tokens=128)

    runtime = devices.runtime_memory_bytes(QWEN25_VL_7B, run, dtype="bfloat16")

    assert runtime == 2 * (57_344 * 722 + 185_344 * 594)
    assert runtime >= 0.3e9


@pytest.mark.parametrize(
    "change",
    [
        {"num_key_value_heads": None, "num_attention_heads": None},
        {"num_hidden_layers": None},
        {"intermediate_size": "large"},
        {"vision_config": None},
        {"vision_config": {"depth": 32, "hidden_size": 1280}},  # no patch size
    ],
)
def test_a_config_without_the_fields_falls_back_to_a_tenth_of_the_weights(
    change: dict[str, object],
) -> None:
    config = {key: value for key, value in {**QWEN25_VL_7B, **change}.items() if value}

    runtime = devices.runtime_memory_bytes(config, LONGEST, dtype="bfloat16")

    assert runtime is None
    estimate = devices.estimate_memory_bytes(
        8_292_166_656, "bfloat16", device="cpu", runtime_bytes=runtime
    )
    assert estimate == int(16_584_333_312 * 1.1)


def test_a_qwen2_vl_vision_config_is_read_from_its_own_fields() -> None:
    """Qwen2-VL's vision config names the encoder's width embed_dim (1,280, MLP ratio 4)
    and its hidden_size is the merger's output (3,584): the encoder's activations come
    from the former."""
    vision = {"embed_dim": 1280, "mlp_ratio": 4, "hidden_size": 3584, "patch_size": 14}
    config = {**QWEN25_VL_7B, "vision_config": {**vision, "spatial_merge_size": 2}}
    small = devices.Workload(text_tokens=0, max_pixels=262_144, max_new_tokens=0)

    runtime = devices.runtime_memory_bytes(config, small, dtype="bfloat16")

    # 1,337 patches x ((10 x 1,280 + 3 x 5,120) x 2 B + 4,704 B) = 1,337 x 61,024 B,
    # more than the prefill of 334 tokens x 185,344 B; KV 57,344 B x 334.
    assert runtime == 2 * (57_344 * 334 + 1337 * 61_024)


def test_available_ram_is_measured() -> None:
    available = devices.available_ram_bytes()

    assert available is not None and available > 64 * 1024**2


def test_auto_without_gpu_is_cpu_in_float32() -> None:
    import torch

    if torch.cuda.is_available() or devices._mps_available():
        pytest.skip("this machine has a GPU")
    plan = devices.plan_device("auto", "none")

    assert plan == devices.DevicePlan(device="cpu", dtype="float32", quantization="none")
    assert plan.precision == "float32"


@pytest.mark.parametrize("setting", ["gpu", "cuda:x", "tpu", ""])
def test_malformed_device_setting_is_refused(setting: str) -> None:
    with pytest.raises(ModelUnavailable, match="OPHTHAI_DEVICE"):
        devices.resolve_device(setting)


def test_explicit_cpu_is_honoured() -> None:
    assert devices.resolve_device(" CPU ") == "cpu"
