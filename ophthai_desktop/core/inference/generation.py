"""Hooks into ``model.generate``: token streaming, the thinking budget, cancellation.

The three classes follow transformers' ``BaseStreamer``, ``LogitsProcessor`` and
``StoppingCriteria`` protocols by duck typing (``generate`` only calls them), so this
module imports without torch or transformers. All of them are called by ``generate`` on
the thread that runs it: the inference worker thread.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ophthai_desktop.core.inference.parsing import THINK_CLOSE, THINK_OPEN

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DeltaCallback = Callable[[str], None]


def hidden_token_ids(tokenizer: Any) -> frozenset[int]:
    """Ids of chat-control tokens (``<|im_end|>``, ``<|endoftext|>``, ...) kept out of text.

    The think tags stay visible even where a tokenizer marks them special.
    """
    ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    ids.update(index for index, token in decoder.items() if getattr(token, "special", False))
    for tag in (THINK_OPEN, THINK_CLOSE):
        tag_id = tokenizer.convert_tokens_to_ids(tag)
        if isinstance(tag_id, int) and tokenizer.convert_ids_to_tokens(tag_id) == tag:
            ids.discard(tag_id)
    return frozenset(ids)


def _flatten(value: Any) -> list[int]:
    if hasattr(value, "reshape"):
        ids: list[int] = value.reshape(-1).tolist()  # ints already
        return ids
    return [int(i) for i in value]


class DeltaStreamer:
    """Decodes tokens as ``generate`` produces them and passes text deltas on.

    Decoding keeps special think tags and drops chat-control tokens. A token that ends
    inside a multi-byte character is held until the character is complete, so deltas
    never carry half a character; the concatenated deltas equal :attr:`text`.

    Args:
        tokenizer: The model's tokenizer.
        on_delta: Called with each new piece of text, on the generating thread.
        hidden_ids: Token ids to leave out of the text (see :func:`hidden_token_ids`).
    """

    #: Tokens held at most while waiting for a character to complete.
    MAX_PENDING = 8

    def __init__(
        self,
        tokenizer: Any,
        on_delta: DeltaCallback | None = None,
        *,
        hidden_ids: Iterable[int] = (),
    ) -> None:
        self._tokenizer = tokenizer
        self._on_delta = on_delta
        self._hidden = frozenset(hidden_ids)
        self._prompt_skipped = False
        # A fast tokenizer's own incremental decoder: a few microseconds a token, where
        # decoding the held ids again costs tens (tokenizers.decoders.DecodeStream).
        self._backend = getattr(tokenizer, "backend_tokenizer", None)
        self._stream = _new_stream() if self._backend is not None else None
        self._pending: list[int] = []
        self._parts: list[str] = []
        self.token_count = 0
        self.started_at = time.perf_counter()
        self.first_token_at: float | None = None

    @property
    def text(self) -> str:
        """All text delivered so far."""
        return "".join(self._parts)

    def put(self, value: Any) -> None:
        """Take new token ids; ``generate`` first passes the prompt, which is skipped."""
        if not self._prompt_skipped:
            self._prompt_skipped = True
            return
        ids = _flatten(value)
        if not ids:
            return
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()
        self.token_count += len(ids)
        if self._stream is None:
            self._pending.extend(i for i in ids if i not in self._hidden)
            self._emit(final=False)
            return
        for token_id in ids:
            if token_id in self._hidden:
                continue
            self._pending.append(token_id)
            try:
                piece = self._stream.step(self._backend, token_id)
            except Exception:  # the decoder refused: fall back to decoding what is held
                piece = None
            if piece is None:
                if len(self._pending) >= self.MAX_PENDING:
                    self._emit(final=True)  # give up waiting for the character
                continue
            self._pending = []
            self._deliver(piece)

    def end(self) -> None:
        """Flush held-back text at the end of generation."""
        self._emit(final=True)

    def push_text(self, text: str) -> None:
        """Deliver text that did not come from a generated token (a pre-filled tag)."""
        self._emit(final=True)
        self._parts.append(text)
        if self._on_delta is not None:
            self._on_delta(text)

    def _emit(self, *, final: bool) -> None:
        if not self._pending:
            return
        piece = self._tokenizer.decode(
            self._pending, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        incomplete = piece.endswith("\ufffd") and len(self._pending) < self.MAX_PENDING
        if incomplete and not final:
            return
        self._pending = []
        if self._stream is not None:
            self._stream = _new_stream()  # what it held was delivered just now
        self._deliver(piece)

    def _deliver(self, piece: str) -> None:
        if piece:
            self._parts.append(piece)
            if self._on_delta is not None:
                self._on_delta(piece)


def _new_stream() -> Any:
    from tokenizers.decoders import DecodeStream

    return DecodeStream(skip_special_tokens=False)


@dataclass
class _ThinkState:
    """Where one sequence stands in its reasoning."""

    text: str = ""
    token_ends: list[int] = field(default_factory=list)
    open_end: int | None = None  # char index after "<think>"; 0 when open from the start
    tokens_before_thinking: int = 0
    closed: bool = False
    forcing: int | None = None  # next position in the closing sequence being forced


class ThinkingBudgetProcessor:
    """Closes ``<think>`` once it has run for ``budget`` tokens.

    A logits processor: after ``budget`` tokens inside an open ``<think>``, it forces the
    token ids of ``</think>`` one step at a time (one step where it is a single token),
    and then leaves the model free to answer. Tags are found in the decoded text, so
    they are recognized however the tokenizer splits them. ``budget`` 0 turns it off.

    Args:
        tokenizer: The model's tokenizer.
        prompt_length: Length of the prompt in tokens; later tokens are the output.
        budget: Tokens allowed inside ``<think>``.
        open_at_start: The prompt ends inside an open ``<think>`` (pre-filled).
        close_ids: The token ids of ``</think>`` where the caller has them already.

    Attributes:
        forced_close: Whether the budget closed the reasoning of any sequence.
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        prompt_length: int,
        budget: int,
        open_at_start: bool = False,
        close_ids: list[int] | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.budget = budget
        self.open_at_start = open_at_start
        self.close_ids: list[int] = (
            list(close_ids)
            if close_ids is not None
            else list(tokenizer.encode(THINK_CLOSE, add_special_tokens=False))
        )
        self.forced_close = False
        self._states: dict[int, _ThinkState] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """Force the next closing token in rows over budget; other rows pass unchanged."""
        if self.budget <= 0 or not self.close_ids:
            return scores
        for row in range(input_ids.shape[0]):
            state = self._states.get(row)
            if state is None:
                state = self._states[row] = _ThinkState(open_end=0 if self.open_at_start else None)
            if state.closed:
                continue  # nothing more to watch in this row
            seen = len(state.token_ends)
            self._advance(state, input_ids[row, self.prompt_length + seen :].tolist())
            if state.closed or state.open_end is None:
                continue
            thinking = len(state.token_ends) - state.tokens_before_thinking
            if state.forcing is None and thinking >= self.budget:
                state.forcing = 0
                self.forced_close = True
                log.debug("thinking budget of %d tokens reached; closing", self.budget)
            if state.forcing is not None:
                forced = self.close_ids[state.forcing]
                scores[row, :] = float("-inf")
                scores[row, forced] = 0.0
                state.forcing += 1
                if state.forcing >= len(self.close_ids):
                    state.closed = True
        return scores

    def _advance(self, state: _ThinkState, new_ids: list[int]) -> None:
        if not new_ids:
            return
        search_from = max(len(state.text) - len(THINK_CLOSE), 0)
        for token_id in new_ids:
            # Per-token decoding can garble multi-byte characters, never the ASCII tags.
            state.text += self._tokenizer.decode(
                [token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False
            )
            state.token_ends.append(len(state.text))
        if state.open_end is None:
            found = state.text.find(THINK_OPEN, search_from)
            if found < 0:
                return
            state.open_end = found + len(THINK_OPEN)
            state.tokens_before_thinking = next(
                i + 1 for i, end in enumerate(state.token_ends) if end >= state.open_end
            )
            search_from = state.open_end
        if state.text.find(THINK_CLOSE, max(search_from, state.open_end)) >= 0:
            state.closed = True
            state.forcing = None


# generate() looks up every logits processor's signature at every step (to pass extra
# arguments to those that take them); a signature set once saves rebuilding it from the
# code object each time, about 40 us a token on a small CPU.
ThinkingBudgetProcessor.__call__.__signature__ = inspect.signature(  # type: ignore[attr-defined]
    ThinkingBudgetProcessor.__call__
)


class CancelCriteria:
    """A stopping criterion that ends generation once ``cancel`` is set.

    Checked after each new token; the prompt's forward pass cannot be interrupted.

    Attributes:
        triggered: Whether it stopped the generation.
    """

    def __init__(self, cancel: threading.Event) -> None:
        self.cancel = cancel
        self.triggered = False
        # The same flags every step until the cancel: made once (generate only combines
        # them with ``|`` into new tensors, it never writes to them).
        self._flags: dict[tuple[int, Any, bool], Any] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        """One flag per sequence: all True once cancelled."""
        stop = self.cancel.is_set()
        self.triggered = self.triggered or stop
        key = (input_ids.shape[0], input_ids.device, stop)
        flags = self._flags.get(key)
        if flags is None:
            import torch

            flags = self._flags[key] = torch.full(
                (input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device
            )
        return flags  # type: ignore[return-value]
