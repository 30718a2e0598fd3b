"""The app's overhead around the model: the whole analysis path against bare generate.

What it measures, in one process, on a tiny Qwen2.5-VL checkpoint built here (no
download, CPU):

    whole_path_s
        ``JobService.queue_image_analysis(png)`` → inference worker thread → engine
        (PNG decode, ``prepare_image``, chat template, processor, ``model.generate`` with
        the engine's streamer, thinking-budget processor and cancel criteria, parsing) →
        ``JobService.complete`` (stored analysis, provenance) → ``AnalysisFinished``
        on the event bus. Timed from the queue call to that event.
    bare_generate_s
        ``model.generate(**inputs)`` alone, on a second copy of the same weights loaded
        the same way (float32, CPU), with ``inputs`` the same processor output the engine
        builds for the same image (built once, outside the timing), greedy, the same
        ``max_new_tokens`` and repetition penalty, no streamer or hooks.

    script_s
        What a script using transformers directly does for the same image: decode the
        PNG, run the same processor, the same ``generate``, decode the output tokens.
        Reported as ``ratio_to_script`` for context; the target is on ``ratio``.

The image (``--image-kind``) is by default the demo OCT B-scan the GUI tests and
``gui_stall.py`` use (``tests/ui/demo_images.oct_bscan``, 512x496 grayscale), the kind of
image the app analyses; ``noise`` is RGB noise, several times the bytes and the slowest
PNG there is to decode.

Both produce the same tokens (checked). Runs alternate (bare, whole, script, bare...)
after one warm-up of each, so drift affects both; the figures are medians.
``ratio = whole_path_s / bare_generate_s``; ``pass`` when ratio <= ``target_ratio``
(1.10).

Models:
    ``--model trained`` (default): ``train_tiny_answerer`` (about 30-60 s to build on
    two cores), which answers a fixed reasoning + JSON and stops at ``<|im_end|>``
    (~60 tokens), so parsing, the stored result and the abnormal-finding alarm are on
    the path too.
    ``--model random``: the random-weight checkpoint (builds in ~2 s), which writes
    exactly ``--max-new-tokens`` tokens that do not parse.

Run (from the repository root)::

    .venv/bin/python bench/inference_overhead.py                # trained, 7 runs each
    .venv/bin/python bench/inference_overhead.py --model random --max-new-tokens 64

One JSON object goes to stdout; progress to stderr. The temporary folder is removed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET_RATIO = 1.10


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def noise_png(size: tuple[int, int], seed: int = 0) -> bytes:
    import torch
    from PIL import Image

    generator = torch.Generator().manual_seed(seed)
    data = torch.randint(0, 256, (size[1], size[0], 3), generator=generator, dtype=torch.uint8)
    buffer = io.BytesIO()
    Image.fromarray(data.numpy(), "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["trained", "random"], default="trained")
    parser.add_argument("--runs", type=int, default=7, help="timed runs of each (after warm-up)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--image", default="512x496", help="WxH of the PNG")
    parser.add_argument(
        "--image-kind",
        choices=["oct", "noise"],
        default="oct",
        help="an OCT-like grayscale B-scan (default), or RGB noise (slowest to decode)",
    )
    args = parser.parse_args()
    for name in list(os.environ):  # no developer setting leaks in
        if name.startswith("OPHTHAI_"):
            del os.environ[name]

    import torch
    from PIL import Image
    from transformers import Qwen2_5_VLForConditionalGeneration

    from ophthai_desktop.bootstrap import build_application
    from ophthai_desktop.core import events as ev
    from ophthai_desktop.core.inference.processor import load_processor
    from ophthai_desktop.core.records import Actor
    from ophthai_desktop.core.settings import Settings
    from tests.support.tiny_checkpoint import (
        TRAINED_MAX_PIXELS,
        _engine_inputs,
        build_tiny_qwen25vl,
        train_tiny_answerer,
    )

    width, height = (int(v) for v in args.image.lower().split("x"))
    if args.image_kind == "oct":
        from tests.ui.demo_images import oct_bscan

        png = oct_bscan(size=(width, height))
    else:
        png = noise_png((width, height))
    with tempfile.TemporaryDirectory(prefix="ophthai-bench-") as tmp:
        folder = Path(tmp) / "model"
        started = time.perf_counter()
        if args.model == "trained":
            log("training the tiny answerer...")
            train_tiny_answerer(folder)
            max_new_tokens = 200  # it stops by itself at <|im_end|>
        else:
            build_tiny_qwen25vl(folder)
            max_new_tokens = args.max_new_tokens
        build_s = time.perf_counter() - started
        log(f"model ready in {build_s:.1f} s")

        settings = Settings(
            data_dir=Path(tmp) / "data",
            _env_file=None,
            model_path=folder,
            device="cpu",
            max_pixels=TRAINED_MAX_PIXELS,
            max_new_tokens=max_new_tokens,
        )
        app = build_application(settings)
        finished: dict[int, threading.Event] = {}
        results: dict[int, Any] = {}

        def on_event(event: ev.Event) -> None:
            if isinstance(event, ev.AnalysisFinished | ev.AnalysisFailed):
                results[event.job_id] = event
                finished.setdefault(event.job_id, threading.Event()).set()

        app.bus.subscribe(on_event)
        app.start_worker()
        actor = Actor("bench", "api")

        def whole_path() -> tuple[float, Any]:
            begin = time.perf_counter()
            job = app.jobs.queue_image_analysis(png, actor=actor)
            done = finished.setdefault(job.id, threading.Event())
            if not done.wait(300):
                raise RuntimeError(f"job {job.id} did not finish")
            elapsed = time.perf_counter() - begin
            event = results[job.id]
            if not isinstance(event, ev.AnalysisFinished):
                raise RuntimeError(f"job {job.id} failed: {event}")
            return elapsed, event.analysis

        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            str(folder), dtype=torch.float32, local_files_only=True
        ).eval()
        processor = load_processor(folder, "qwen2_5_vl")
        inputs = _engine_inputs(processor, Image.open(io.BytesIO(png)), None, settings)
        prompt_length = int(inputs["input_ids"].shape[1])
        repetition_penalty = model.generation_config.repetition_penalty

        def script() -> float:
            """What a script using transformers directly does for the same image: decode
            the PNG, run the processor, generate, decode the output."""
            begin = time.perf_counter()
            image = Image.open(io.BytesIO(png))
            image.load()
            output = greedy(_engine_inputs(processor, image, None, settings))
            processor.tokenizer.decode(output[0, prompt_length:], skip_special_tokens=False)
            return time.perf_counter() - begin

        def greedy(model_inputs: Any) -> Any:
            with torch.inference_mode():
                return model.generate(
                    **model_inputs,
                    do_sample=False,
                    temperature=1.0,
                    top_p=1.0,
                    top_k=50,
                    num_beams=1,
                    max_new_tokens=max_new_tokens,
                    repetition_penalty=repetition_penalty,
                )

        def bare() -> tuple[float, int]:
            begin = time.perf_counter()
            output = greedy(inputs)
            return time.perf_counter() - begin, int(output.shape[1]) - prompt_length

        log("warm-up (the first job also loads the model in the worker)...")
        load_started = time.perf_counter()
        _, first = whole_path()
        first_job_s = time.perf_counter() - load_started
        _, bare_tokens = bare()
        if first.completion_tokens != bare_tokens:
            raise RuntimeError(
                f"the paths wrote different token counts: {first.completion_tokens} vs "
                f"{bare_tokens}"
            )

        script()
        bare_times: list[float] = []
        whole_times: list[float] = []
        script_times: list[float] = []
        for run in range(args.runs):
            bare_s, _ = bare()
            whole_s, analysis = whole_path()
            script_s = script()
            bare_times.append(bare_s)
            whole_times.append(whole_s)
            script_times.append(script_s)
            log(
                f"run {run + 1}/{args.runs}: bare {bare_s:.3f} s, whole {whole_s:.3f} s, "
                f"script {script_s:.3f} s"
            )
        app.close()

    bare_median = statistics.median(bare_times)
    whole_median = statistics.median(whole_times)
    script_median = statistics.median(script_times)
    ratio = whole_median / bare_median
    report = {
        "model": args.model,
        "image": f"{width}x{height} {args.image_kind}, {len(png) / 1000:.0f} KB",
        "max_pixels": TRAINED_MAX_PIXELS,
        "prompt_tokens": prompt_length,
        "completion_tokens": bare_tokens,
        "parse_status": analysis.parse_status,
        "bare_generate_s": round(bare_median, 4),
        "whole_path_s": round(whole_median, 4),
        "overhead_s": round(whole_median - bare_median, 4),
        "ratio": round(ratio, 4),
        "target_ratio": TARGET_RATIO,
        "pass": ratio <= TARGET_RATIO,
        "script_s": round(script_median, 4),
        "ratio_to_script": round(whole_median / script_median, 4),
        "runs": {
            "count": args.runs,
            "bare_generate_s": [round(t, 4) for t in bare_times],
            "whole_path_s": [round(t, 4) for t in whole_times],
            "script_s": [round(t, 4) for t in script_times],
        },
        "first_job_with_load_s": round(first_job_s, 3),
        "model_build_s": round(build_s, 1),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
