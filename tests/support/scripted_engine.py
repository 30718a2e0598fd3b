"""A scripted stand-in for the inference engine.

It lets tests of the queue, the worker, the API and the GUI choose the model's answer
(abnormal, normal, unparseable, failing, slow) without a model. The real engine is
tested on the tiny random-weight checkpoint.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from ophthai_desktop.core.inference import EngineStatus, GenerationResult, ModelState, ParsedAnswer


@dataclass
class ScriptedEngine:
    """Produces a chosen answer, streaming it in pieces; can block until released."""

    answer: ParsedAnswer | None
    state: str = "ready"
    fail_with: Exception | None = None
    hold: threading.Event | None = None
    #: When set, :meth:`load` stays in ``loading`` until it is set (a slow model load).
    load_hold: threading.Event | None = None
    seen_sizes: list[tuple[int, int]] = field(default_factory=list)
    #: Where ``answer`` is None: what the unparsed answer gave as its classification.
    named: tuple[str, ...] = ()
    parse_error: str = "no JSON object in the answer"
    loads: int = 0

    def status(self) -> EngineStatus:
        return EngineStatus(
            state=ModelState(self.state),
            message=f"scripted engine is {self.state}",
            model_id="scripted",
            model_source="scripted",
            device="cpu",
        )

    def confirm_installed(self) -> EngineStatus:
        return self.status()

    def refresh(self) -> EngineStatus:
        return self.status()

    def load(self) -> EngineStatus:
        self.loads += 1
        if self.load_hold is not None:
            self.state = "loading"
            self.load_hold.wait()
        self.state = "ready"
        return self.status()

    def unload(self) -> EngineStatus:
        self.state = "installed"
        return self.status()

    def generate(
        self,
        image: Image.Image,
        *,
        on_delta: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        question: str | None = None,
        modality: str | None = None,
    ) -> GenerationResult:
        self.seen_sizes.append(image.size)
        if self.fail_with:
            # A fresh one each time: raised again, the one exception gathered each
            # run's frames in its traceback, and the worker's log line grew with them.
            raise copy.copy(self.fail_with)
        pieces = ["<think>", "Looking at ", "the fovea.", "</think>", '{"classification": "x"}']
        for piece in pieces:
            if on_delta:
                on_delta(piece)
            if self.hold is not None:
                while not self.hold.wait(0.01):
                    if cancel is not None and cancel.is_set():
                        break
            if cancel is not None and cancel.is_set():
                return self._result(cancelled=True)
        return self._result(cancelled=False)

    def _result(self, *, cancelled: bool) -> GenerationResult:
        return GenerationResult(
            raw_text="<think>Looking at the fovea.</think>{...}",
            reasoning="Looking at the fovea.",
            answer_text='{"classification": "x"}',
            parsed=None if cancelled else self.answer,
            parse_error=None if self.answer else self.parse_error,
            prompt_version="test-v1",
            model_id="scripted",
            model_source="scripted",
            revision="abc123",
            device="cpu",
            dtype="float32",
            quantization="none",
            generation={"max_new_tokens": 64},
            prompt_tokens=10,
            completion_tokens=5,
            time_to_first_token_s=0.01,
            total_s=0.02,
            cancelled=cancelled,
            finish_reason="cancelled" if cancelled else "eos",
            named_classifications=() if self.answer else self.named,
        )


DME = ParsedAnswer(
    classification="Diabetic Macular Edema",
    confidence=87.0,
    findings=("intraretinal fluid",),
    recommendation="Refer to retina clinic",
    explanation="Cysts in the outer plexiform layer.",
)
NORMAL = ParsedAnswer(classification="Normal", confidence=95.0)
