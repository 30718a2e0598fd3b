"""Decoding a large JPEG: for the model, and for the check at ingest.

What it measures
    Fundus cameras write 12-24 MP JPEGs and ``OPHTHAI_MAX_IMAGE_PIXELS`` lets in up to
    120 MP, while the model reads ~0.26 MP (``OPHTHAI_MAX_PIXELS``). For each size a
    fundus-like JPEG is made with Pillow (a bright disc on a dark ground, fine grain; the
    24 MP one carries EXIF orientation 6, so it comes out portrait), and each case runs in
    a fresh interpreter (``--child``), which reports its time and its peak RSS over what
    it held once its imports were done and the file read:

    ``model_reduced``: the model's path as the app runs it: ``Image.open`` (the worker)
    then ``prepare_image`` with the processor's fit (the engine), which decodes a JPEG
    at the DCT scale that leaves twice the fitted size.
    ``check_reduced``: ``inspect_image``, which decodes a JPEG at 1/8 scale.

Baselines (same run, same files, same way of measuring)
    ``model_full``: the same path with the whole image decoded first (``load()``), as the
    worker did before. ``check_full``: ``Image.open`` and ``load()``, the check's decode
    before. ``ratios``: reduced over full, per figure. ``mean_abs_diff``: between the two
    model inputs, in levels of 255 (their sizes must be equal: ``same_size``).

Run (from the repository root)::

    .venv/bin/python bench/jpeg_decode.py              # 24 and 120 MP, 3 runs each
    .venv/bin/python bench/jpeg_decode.py --sizes 24 --runs 5

One JSON object goes to stdout; progress to stderr. The temporary folder is removed.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

CASES = ("model_full", "model_reduced", "check_full", "check_reduced")
#: Megapixels → (width, height, EXIF orientation).
SHAPES = {24: (6000, 4000, 6), 120: (12000, 10000, 1)}


def _make_jpeg(path: Path, width: int, height: int, orientation: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    small_w, small_h = width // 4, height // 4
    y, x = np.ogrid[:small_h, :small_w]
    radius = np.hypot((x - small_w / 2) / (small_w / 2), (y - small_h / 2) / (small_h / 2))
    disc = np.clip(1.1 - radius, 0, 1)[..., None] * np.array([200.0, 90.0, 30.0], np.float32)
    pixels = disc + 20 + rng.normal(0, 6, (small_h, small_w, 1)).astype(np.float32)
    small = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    del pixels, disc
    image = small.resize((width, height), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = orientation
    image.save(path, "JPEG", quality=92, exif=exif.tobytes())


def _child(case: str, path: Path, max_pixels: int, out: Path | None) -> None:
    import resource

    from PIL import Image
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

    from ophthai_desktop.core.imaging import allow_pillow_pixels, inspect_image
    from ophthai_desktop.core.inference.preprocess import prepare_image

    allow_pillow_pixels(200_000_000)

    def fit(size: tuple[int, int]) -> tuple[int, int]:
        height, width = smart_resize(
            size[1], size[0], factor=28, min_pixels=3136, max_pixels=max_pixels
        )
        return int(width), int(height)

    data = path.read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = None
    if case.startswith("model"):
        image = Image.open(io.BytesIO(data))
        if case == "model_full":
            image.load()
        result = prepare_image(image, fit=fit, resample=Image.Resampling.BICUBIC)
    elif case == "check_full":
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    else:
        inspect_image(data, max_bytes=len(data), max_pixels=200_000_000)
    elapsed = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    if result is not None and out is not None:
        result.save(out, "PNG")
    print(json.dumps({"s": elapsed, "rss_mb": peak_kib / 1024}))


def _run_child(case: str, path: Path, max_pixels: int, out: Path | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", case, str(path), "--max-pixels"]
    command.append(str(max_pixels))
    if out is not None:
        command += ["--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _mean_abs_diff(first: Path, second: Path) -> tuple[float, bool]:
    import numpy as np
    from PIL import Image

    with Image.open(first) as a, Image.open(second) as b:
        if a.size != b.size:
            return float("nan"), False
        left = np.asarray(a.convert("RGB"), np.int16)
        right = np.asarray(b.convert("RGB"), np.int16)
    return float(np.abs(left - right).mean()), True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="24,120", help="megapixels: 24 and/or 120")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--max-pixels", type=int, default=262144)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "PATH"))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--diff", nargs=2, type=Path, metavar=("FIRST", "SECOND"))
    parser.add_argument("--make", nargs=4, metavar=("PATH", "WIDTH", "HEIGHT", "ORIENTATION"))
    args = parser.parse_args()
    if args.diff:
        print(json.dumps(_mean_abs_diff(*args.diff)))
        return
    if args.make:
        _make_jpeg(Path(args.make[0]), *(int(value) for value in args.make[1:]))
        return
    if args.child:
        _child(args.child[0], Path(args.child[1]), args.max_pixels, args.out)
        return

    report: dict[str, Any] = {"max_pixels": args.max_pixels, "runs": args.runs, "images": {}}
    folder = Path(tempfile.mkdtemp(prefix="ophthai-jpeg-bench-"))
    try:
        for megapixels in (int(size) for size in args.sizes.split(",")):
            width, height, orientation = SHAPES[megapixels]
            path = folder / f"{megapixels}mp.jpg"
            print(f"making a {width}x{height} JPEG...", file=sys.stderr)
            # Everything with numpy or pixels in a child of its own: Linux starts a
            # child's peak RSS at its parent's size, so this process stays small.
            make = [sys.executable, __file__, "--make", str(path), str(width), str(height)]
            subprocess.run([*make, str(orientation)], check=True)
            figures: dict[str, dict[str, float]] = {}
            for case in CASES:
                runs = []
                for run in range(args.runs):
                    out = folder / f"{case}.png" if case.startswith("model") and run == 0 else None
                    runs.append(_run_child(case, path, args.max_pixels, out))
                figures[case] = {
                    key: round(statistics.median(r[key] for r in runs), 3)
                    for key in ("s", "rss_mb")
                }
                print(f"{megapixels} MP {case}: {figures[case]}", file=sys.stderr)
            compare = [sys.executable, __file__, "--diff", str(folder / "model_full.png")]
            compare.append(str(folder / "model_reduced.png"))
            compared = subprocess.run(compare, capture_output=True, text=True, check=True)
            difference, same_size = json.loads(compared.stdout)
            report["images"][f"{megapixels}mp"] = {
                "size": [width, height],
                "exif_orientation": orientation,
                "file_mb": round(path.stat().st_size / 1e6, 1),
                **figures,
                "ratios": {
                    f"{kind}_{key}": round(
                        figures[f"{kind}_reduced"][key] / max(figures[f"{kind}_full"][key], 1e-9),
                        3,
                    )
                    for kind in ("model", "check")
                    for key in ("s", "rss_mb")
                },
                "same_size": same_size,
                "mean_abs_diff": round(difference, 3),
            }
            path.unlink()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
