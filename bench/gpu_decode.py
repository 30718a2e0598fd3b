"""Time to first token and decode speed of a 7B-sized Qwen2.5-VL on one CUDA GPU.

What it measures
    A random-weight model with Qwen2.5-VL-7B-Instruct's real architecture (the
    configuration is written out below: 28 layers, hidden 3584, 28 heads / 4 KV heads,
    intermediate 18944, vocab 152064, a 32-block vision tower of width 1280 with window
    attention) is built directly on the GPU in bfloat16: no download, no weights read
    from disk. Its compute per token is the real model's; its output is byte soup, and
    the end tokens' output rows are zeroed so every run writes exactly
    ``--max-new-tokens`` tokens. The tokenizer, image processor and chat template come
    from the tiny test checkpoint (``tests/support/tiny_checkpoint.py``); the
    configuration's special-token ids (image, vision start/end, end of text) are set to
    that tokenizer's ids, which lie inside the 152064-row vocabulary. The prompt is
    therefore shorter than OctoMed's in tokens (the tiny BPE has ~400 entries) while the
    image part, which dominates the prompt, is the same: one 512x496 image is 18x18
    merged patches, 324 image tokens, at the default ``max_pixels``.

    engine
        ``InferenceEngine.generate`` on that model (injected into the engine in place of
        a loaded checkpoint): image preparation, chat template, processor, transfer,
        ``model.generate`` with the engine's ``DeltaStreamer``, ``ThinkingBudgetProcessor``
        and ``CancelCriteria``, parsing. TTFT is the engine's own
        ``time_to_first_token_s`` (from the call, preprocessing included); decode tok/s
        is ``(completion_tokens - 1) / (total_s - time_to_first_token_s)``.
    baseline
        Plain ``model.generate`` on the same processor output already on the GPU (greedy,
        same ``max_new_tokens``, no hooks): TTFT is a ``max_new_tokens=1`` call, decode
        tok/s is ``(N - 1) / (t_N - t_1)``.

Each figure is the median of ``--runs`` runs after one warm-up; CUDA is synchronised
around every timing. Batch size 1. Needs about 17 GB of GPU memory.

Without CUDA it prints ``{"skipped": "no CUDA device", ...}`` and exits with code 0, so
it can run in any CI step; check the ``skipped`` key.

Run (from the repository root, on a machine with an NVIDIA GPU and a CUDA torch)::

    .venv/bin/python bench/gpu_decode.py
    .venv/bin/python bench/gpu_decode.py --max-new-tokens 256 --runs 5

One JSON object goes to stdout; progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IMAGE_SIZE = (512, 496)

#: Qwen2.5-VL-7B-Instruct's config.json (flat, as on the Hub). transformers'
#: ``Qwen2_5_VLConfig()`` defaults are the 72B text model and a 3584-wide vision tower,
#: so nothing is left to the defaults. Token ids are replaced with the tiny tokenizer's.
QWEN25_VL_7B: dict[str, Any] = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"],
    "model_type": "qwen2_5_vl",
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
    "vision_token_id": 151654,
    "image_token_id": 151655,
    "video_token_id": 151656,
    "hidden_act": "silu",
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 18944,
    "max_position_embeddings": 128000,
    "max_window_layers": 28,
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 152064,
    "vision_config": {
        "depth": 32,
        "hidden_act": "silu",
        "hidden_size": 1280,
        "intermediate_size": 3420,
        "num_heads": 16,
        "in_chans": 3,
        "out_hidden_size": 3584,
        "patch_size": 14,
        "spatial_merge_size": 2,
        "spatial_patch_size": 14,
        "window_size": 112,
        "fullatt_block_indexes": [7, 15, 23, 31],
        "tokens_per_second": 2,
        "temporal_patch_size": 2,
    },
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def config_for(vocab: dict[str, int]) -> dict[str, Any]:
    """The 7B configuration with the tiny tokenizer's special-token ids."""
    config = json.loads(json.dumps(QWEN25_VL_7B))
    config.update(
        bos_token_id=vocab["<|endoftext|>"],
        eos_token_id=vocab["<|im_end|>"],
        pad_token_id=vocab["<|endoftext|>"],
        vision_start_token_id=vocab["<|vision_start|>"],
        vision_end_token_id=vocab["<|vision_end|>"],
        vision_token_id=vocab["<|vision_pad|>"],
        image_token_id=vocab["<|image_pad|>"],
        video_token_id=vocab["<|video_pad|>"],
    )
    if max(vocab.values()) >= config["vocab_size"]:
        raise SystemExit("the tokenizer does not fit the configuration's vocabulary")
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cuda:0")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        log("gpu_decode: no CUDA device (or a CPU-only torch); nothing measured.")
        print(json.dumps({"skipped": "no CUDA device", "torch": torch.__version__}))
        return 0

    from PIL import Image
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from ophthai_desktop.core.inference import devices
    from ophthai_desktop.core.inference.engine import InferenceEngine, _Loaded
    from ophthai_desktop.core.inference.processor import load_processor
    from ophthai_desktop.core.inference.prompt import longest_prompt_tokens
    from ophthai_desktop.core.settings import Settings
    from tests.support.tiny_checkpoint import _engine_inputs, build_tiny_qwen25vl

    device = args.device
    torch.cuda.set_device(torch.device(device))
    with tempfile.TemporaryDirectory(prefix="ophthai-gpu-") as tmp:
        folder = build_tiny_qwen25vl(Path(tmp) / "tiny")  # tokenizer, processor, template
        processor = load_processor(folder, "qwen2_5_vl")
        vocab = processor.tokenizer.get_vocab()
        config = Qwen2_5_VLConfig(**config_for(vocab))

        log("building the 7B-sized model on the GPU (random bf16 weights)...")
        started = time.perf_counter()
        torch.manual_seed(0)
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration._from_config(
                config, dtype=torch.bfloat16
            ).eval()
            with torch.no_grad():
                for token in ("<|im_end|>", "<|endoftext|>"):
                    model.lm_head.weight[vocab[token]] = 0.0  # never ends early
        torch.cuda.synchronize()
        build_s = time.perf_counter() - started
        parameters = sum(p.numel() for p in model.parameters())
        counted = devices.parameters_from_config(config_for(vocab))
        log(f"{parameters / 1e9:.2f} B parameters in {build_s:.1f} s")

        settings = Settings(
            data_dir=Path(tmp) / "data",
            _env_file=None,
            model_path=folder,
            device=device,
            max_new_tokens=args.max_new_tokens,
        )
        engine = InferenceEngine(settings)
        workload = devices.Workload(
            text_tokens=longest_prompt_tokens(),
            max_pixels=settings.max_pixels,
            max_new_tokens=settings.max_new_tokens,
        )
        estimate = devices.estimate_memory_bytes(
            counted or parameters,
            "bfloat16",
            device=device,
            runtime_bytes=devices.runtime_memory_bytes(
                config_for(vocab), workload, dtype="bfloat16"
            ),
        )
        # Stand-in for engine.load(): the engine's own _Loaded with the model built here.
        engine._loaded = _Loaded.of(
            model,
            processor,
            devices.DevicePlan(device=device, dtype="bfloat16", quantization="none"),
            engine._install,
        )
        image = Image.effect_noise(IMAGE_SIZE, 64).convert("RGB")
        inputs = _engine_inputs(processor, image, None, settings).to(device)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        image_tokens = int((inputs["input_ids"] == config.image_token_id).sum())

        def bare(max_new_tokens: int) -> tuple[float, int]:
            torch.cuda.synchronize()
            begin = time.perf_counter()
            with torch.inference_mode():
                output = model.generate(
                    **inputs,
                    do_sample=False,
                    temperature=1.0,
                    top_p=1.0,
                    top_k=50,
                    num_beams=1,
                    max_new_tokens=max_new_tokens,
                )
            torch.cuda.synchronize()
            return time.perf_counter() - begin, int(output.shape[1]) - prompt_tokens

        def engine_run() -> Any:
            torch.cuda.synchronize()
            result = engine.generate(image, cancel=threading.Event())
            torch.cuda.synchronize()
            return result

        log("warm-up...")
        bare(args.max_new_tokens)
        engine_run()
        engine_ttft, engine_tps, engine_tokens = [], [], 0
        bare_ttft, bare_tps, bare_tokens = [], [], 0
        for run in range(args.runs):
            result = engine_run()
            engine_tokens = result.completion_tokens
            ttft = result.time_to_first_token_s or 0.0
            engine_ttft.append(ttft)
            engine_tps.append((engine_tokens - 1) / (result.total_s - ttft))
            first_s, _ = bare(1)
            whole_s, bare_tokens = bare(args.max_new_tokens)
            bare_ttft.append(first_s)
            bare_tps.append((bare_tokens - 1) / (whole_s - first_s))
            log(
                f"run {run + 1}: engine ttft {ttft:.3f} s {engine_tps[-1]:.1f} tok/s; "
                f"generate ttft {first_s:.3f} s {bare_tps[-1]:.1f} tok/s"
            )
        engine._loaded = None

    engine_decode = statistics.median(engine_tps)
    bare_decode = statistics.median(bare_tps)
    report = {
        "device": torch.cuda.get_device_name(torch.device(device)),
        "torch": torch.__version__,
        "model": "Qwen2.5-VL-7B architecture, random bf16 weights",
        "parameters": parameters,
        "image": f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}",
        "prompt_tokens": prompt_tokens,
        "image_tokens": image_tokens,
        "max_new_tokens": args.max_new_tokens,
        "batch_size": 1,
        "engine": {
            "time_to_first_token_s": round(statistics.median(engine_ttft), 4),
            "decode_tokens_per_s": round(engine_decode, 2),
            "completion_tokens": engine_tokens,
        },
        "baseline_generate": {
            "time_to_first_token_s": round(statistics.median(bare_ttft), 4),
            "decode_tokens_per_s": round(bare_decode, 2),
            "completion_tokens": bare_tokens,
        },
        "decode_ratio_engine_vs_baseline": round(engine_decode / bare_decode, 4),
        "runs": args.runs,
        "build_s": round(build_s, 1),
        "peak_memory_bytes": torch.cuda.max_memory_allocated(torch.device(device)),
        "peak_reserved_bytes": torch.cuda.max_memory_reserved(torch.device(device)),
        # The engine's load-time check, on the same configuration: does it count the
        # parameters right, and does its estimate cover what one analysis really took?
        "engine_parameter_count_from_config": counted,
        "engine_estimate_bytes": estimate,
        "peak_over_estimate": round(
            torch.cuda.max_memory_allocated(torch.device(device)) / estimate, 4
        ),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
