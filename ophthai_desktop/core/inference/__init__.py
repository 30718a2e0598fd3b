"""Local inference with OctoMed-7B (a Qwen2.5-VL fine-tune) through transformers.

Importing this package is cheap: torch and transformers are imported only when a model
is loaded, so the window and the API start without them.
"""

from ophthai_desktop.core.inference.devices import DevicePlan, estimate_memory_bytes
from ophthai_desktop.core.inference.download import DownloadCancelled, download_model
from ophthai_desktop.core.inference.engine import (
    EngineStatus,
    GenerationResult,
    InferenceEngine,
    ModelState,
)
from ophthai_desktop.core.inference.generation import (
    CancelCriteria,
    DeltaStreamer,
    ThinkingBudgetProcessor,
)
from ophthai_desktop.core.inference.parsing import (
    AnswerParseError,
    ParsedAnswer,
    StreamPhases,
    parse_answer,
    split_output,
)
from ophthai_desktop.core.inference.preprocess import prepare_image
from ophthai_desktop.core.inference.prompt import PROMPT_VERSION, build_messages

__all__ = [
    "PROMPT_VERSION",
    "AnswerParseError",
    "CancelCriteria",
    "DeltaStreamer",
    "DevicePlan",
    "DownloadCancelled",
    "EngineStatus",
    "GenerationResult",
    "InferenceEngine",
    "ModelState",
    "ParsedAnswer",
    "StreamPhases",
    "ThinkingBudgetProcessor",
    "build_messages",
    "download_model",
    "estimate_memory_bytes",
    "parse_answer",
    "prepare_image",
    "split_output",
]
