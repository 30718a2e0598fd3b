"""The engine and the worker on a CUDA GPU, through the code path a workstation uses.

Skipped where torch sees no CUDA device, which includes CI. On a GPU machine::

    pytest tests/core/inference/test_inference_cuda.py

The tiny checkpoints load with ``device_map`` onto the GPU in bfloat16, exactly as
OctoMed-7B does; memory figures come from the real allocator and ``cudaMemGetInfo``.
Last run on an NVIDIA H200 (torch 2.11, transformers 5.25, bitsandbytes 0.50.2): all
nine passed, the worker test with the trained answer intact in bfloat16 (its checkpoint
trained in 14 s on that host's CPU). The quantized tests are skipped without bitsandbytes.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from ophthai_desktop.bootstrap import build_application
from ophthai_desktop.core import events as ev
from ophthai_desktop.core.errors import ModelUnavailable
from ophthai_desktop.core.inference import InferenceEngine, ModelState
from ophthai_desktop.core.inference import devices as devices_module
from ophthai_desktop.core.records import Actor
from ophthai_desktop.core.services.patients import NewImage
from ophthai_desktop.core.settings import Settings
from tests.support.images import png_bytes
from tests.support.jobs import wait_for_outcome
from tests.support.tiny_checkpoint import TRAINED_ANSWER, TRAINED_MAX_PIXELS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

GPU = "cuda:0"
SMALL_IMAGE_PIXELS = 4 * 3136


def gpu_settings(folder: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "max_pixels": SMALL_IMAGE_PIXELS,
        "max_new_tokens": 12,
        "device": GPU,
    }
    values.update(overrides)
    return Settings(data_dir=folder / "data", _env_file=None, **values)  # type: ignore[arg-type]


def scan() -> Image.Image:
    return Image.effect_noise((160, 120), 64).convert("RGB")


def allocated() -> int:
    return int(torch.cuda.memory_allocated(torch.device(GPU)))


def fill_gpu(leave: int) -> list[torch.Tensor]:
    """Allocate the GPU's free memory until less than ``leave`` bytes are left free."""
    torch.cuda.empty_cache()
    held: list[torch.Tensor] = []
    size = 1 << 40
    while size >= 1 << 20:
        free, _total = torch.cuda.mem_get_info(torch.device(GPU))
        if free - size < leave:
            size //= 2
            continue
        try:
            held.append(torch.empty(size, dtype=torch.uint8, device=GPU))
        except torch.cuda.OutOfMemoryError:
            size //= 2
    return held


def linear_layer_packages(model: Any) -> dict[str, str]:
    """Each linear layer's name and the package its class comes from (torch or bitsandbytes)."""
    return {
        name: type(module).__module__.split(".")[0]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }


@pytest.fixture(scope="module")
def gpu_engine(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    engine = InferenceEngine(
        gpu_settings(tmp_path_factory.mktemp("gpu"), model_path=tiny_checkpoint)
    )
    engine.load()
    yield engine
    engine.unload()


def test_auto_loads_onto_the_gpu_in_bfloat16_and_unload_gives_the_memory_back(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    before = allocated()
    engine = InferenceEngine(gpu_settings(tmp_path, model_path=tiny_checkpoint, device="auto"))

    ready = engine.load()

    assert ready.state is ModelState.READY
    assert (ready.device, ready.dtype, ready.quantization) == (GPU, "bfloat16", "none")
    parameters = devices_module.count_parameters(tiny_checkpoint)
    assert parameters and ready.parameters == parameters
    # The allocator's own count: two bytes a parameter, in 512-byte blocks per tensor.
    assert ready.used_bytes is not None
    assert 2 * parameters <= ready.used_bytes == allocated() - before
    _free, total = torch.cuda.mem_get_info(torch.device(GPU))
    assert ready.free_bytes is not None and 0 < ready.free_bytes <= total
    assert ready.estimated_bytes is not None and ready.estimated_bytes > 2 * parameters

    unloaded = engine.unload()

    assert unloaded.state is ModelState.INSTALLED
    assert allocated() == before
    # Off the GPU: no device, dtype or memory figures, as before the first load.
    assert unloaded.device is None and unloaded.dtype is None
    assert unloaded.free_bytes is None and unloaded.used_bytes is None


def test_generation_on_the_gpu_streams_and_repeats_itself(gpu_engine: Any) -> None:
    deltas: list[str] = []
    image = scan()

    first = gpu_engine.generate(image, on_delta=deltas.append)
    second = gpu_engine.generate(image)

    assert deltas and "".join(deltas) == first.raw_text
    assert (first.device, first.dtype, first.quantization) == (GPU, "bfloat16", "none")
    assert first.completion_tokens == 12 and first.finish_reason == "length"
    assert first.parsed is None and first.parse_error  # random weights: byte soup
    assert first.time_to_first_token_s is not None
    assert 0 < first.time_to_first_token_s <= first.total_s
    assert second.raw_text == first.raw_text  # greedy decoding on the same GPU


def test_cancel_stops_a_gpu_generation_after_the_current_token(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    engine = InferenceEngine(gpu_settings(tmp_path, model_path=tiny_checkpoint, max_new_tokens=500))
    engine.load()
    cancel = threading.Event()

    def on_delta(_delta: str) -> None:
        cancel.set()

    result = engine.generate(scan(), on_delta=on_delta, cancel=cancel)

    assert result.cancelled and result.finish_reason == "cancelled"
    assert 1 <= result.completion_tokens <= 3
    engine.unload()


def test_thinking_budget_closes_the_reasoning_on_the_gpu(
    tiny_thinking_checkpoint: Path, tmp_path: Path
) -> None:
    engine = InferenceEngine(
        gpu_settings(
            tmp_path, model_path=tiny_thinking_checkpoint, thinking_budget=5, max_new_tokens=40
        )
    )
    engine.load()

    result = engine.generate(scan())

    assert result.raw_text == "<think>~~~~~</think>"
    assert result.thinking_forced_closed and result.finish_reason == "eos"
    engine.unload()


def test_a_model_larger_than_the_free_gpu_memory_is_refused_before_loading(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    engine = InferenceEngine(gpu_settings(tmp_path, model_path=tiny_checkpoint))
    held = fill_gpu(leave=256 * 1024**2)  # the estimate's fixed margin alone is 512 MiB
    try:
        with pytest.raises(ModelUnavailable) as refused:
            engine.load()
    finally:
        del held
        torch.cuda.empty_cache()

    assert "of GPU memory on cuda:0 (bfloat16), but only" in refused.value.message
    assert engine.status().state is ModelState.ERROR
    assert engine.load().state is ModelState.READY  # once the memory is free again
    engine.unload()


def test_running_out_of_gpu_memory_mid_analysis_is_a_clear_error_and_recoverable(
    gpu_engine: Any,
) -> None:
    held = fill_gpu(leave=0)
    try:
        with pytest.raises(ModelUnavailable) as refused:
            gpu_engine.generate(scan())
    finally:
        del held
        torch.cuda.empty_cache()

    assert "The GPU ran out of memory during the analysis" in refused.value.message
    assert gpu_engine.generate(scan()).completion_tokens == 12


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is None, reason="needs the bitsandbytes package"
)
@pytest.mark.parametrize("quantization", ["8bit", "4bit"])
def test_a_quantized_model_loads_smaller_and_generates_on_the_gpu(
    tiny_checkpoint: Path, tmp_path: Path, quantization: str
) -> None:
    full = InferenceEngine(gpu_settings(tmp_path / "full", model_path=tiny_checkpoint))
    full_bytes = full.load().used_bytes
    full.unload()
    before = allocated()
    engine = InferenceEngine(
        gpu_settings(tmp_path / "small", model_path=tiny_checkpoint, quantization=quantization)
    )

    ready = engine.load()
    deltas: list[str] = []
    result = engine.generate(scan(), on_delta=deltas.append)

    assert ready.state is ModelState.READY
    assert (ready.device, ready.dtype, ready.quantization) == (GPU, "bfloat16", quantization)
    # Only the text layers are quantized: the vision tower and lm_head stay bfloat16.
    assert full_bytes is not None and ready.used_bytes is not None
    assert ready.used_bytes < full_bytes
    assert result.quantization == quantization and result.completion_tokens == 12
    assert deltas and "".join(deltas) == result.raw_text
    kinds = linear_layer_packages(engine._loaded.model)  # what bitsandbytes replaced
    assert {k for n, k in kinds.items() if n.startswith("model.visual.")} == {"torch"}
    assert kinds["lm_head"] == "torch"
    assert {k for n, k in kinds.items() if ".language_model." in n} == {"bitsandbytes"}
    engine.unload()
    # All of the model is given back; bitsandbytes keeps its NF4 code table (1 KiB seen).
    assert allocated() - before <= 4096


def test_an_analysis_runs_through_the_worker_on_the_gpu(
    trained_checkpoint: Path, tmp_path: Path
) -> None:
    # The tiny answerer is trained in float32 on the CPU and runs here in bfloat16; the
    # pipeline's assertions come first, so a changed greedy answer is told apart.
    application = build_application(
        gpu_settings(
            tmp_path,
            model_path=trained_checkpoint,
            max_pixels=TRAINED_MAX_PIXELS,
            max_new_tokens=200,
        )
    )
    seen: list[ev.Event] = []
    application.bus.subscribe(seen.append)
    try:
        application.start_worker()
        actor = Actor("tester", "gui")
        patient = application.patients.create_patient(
            {"name": "On the GPU"},
            actor=actor,
            image=NewImage(png_bytes((96, 72)), modality="OCT"),
        )
        job = application.jobs.queue_patient_analysis(patient.id, actor=actor)
        outcome = wait_for_outcome(application, job.id)
    finally:
        application.close()

    assert outcome.job.state == "done", outcome.job.error
    analysis = outcome.analysis
    assert analysis is not None
    assert (analysis.device, analysis.dtype, analysis.quantization) == (GPU, "bfloat16", "none")
    assert analysis.completion_tokens and 0 < analysis.completion_tokens <= 200
    assert analysis.time_to_first_token_s is not None and analysis.time_to_first_token_s > 0
    streamed = [e for e in seen if isinstance(e, ev.AnalysisProgressed) and e.job_id == job.id]
    assert streamed, "no delta arrived"
    reasoning = "".join(e.delta for e in streamed if e.phase == "reasoning")
    answer = "".join(e.delta for e in streamed if e.phase == "answer")
    assert (reasoning.strip(), answer.strip()) == (analysis.reasoning_text, analysis.answer_text)
    assert analysis.parse_status == "parsed", analysis.answer_text
    assert analysis.result == TRAINED_ANSWER
