"""One static batch: several sequences decoded by one onnxruntime-genai generator.

The CPU build of onnxruntime-genai decodes a batch in one forward pass per step, but a batch is
static: its prompts are read together (``append_tokens`` once, right-padded), and no sequence can
join later. onnxruntime-genai masks trailing pad tokens (``pad_token_id``) and reads each row's
logits at its last real token, so rows of different lengths decode exactly as they would alone.
A row whose own prompt ends with the pad token would be misread, so such a prompt runs alone
(see ``needs_own_batch``).

A row that finishes (end of generation, stop string, length, cancellation) is given the
end-of-generation token from then on; its tokens are dropped and its slot is free for the next
batch, while the others continue.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from slmkit.engine.admission import Job
from slmkit.engine.base import FinishReason, TokenEvent
from slmkit.engine.onnx.sampling import TokenSampler
from slmkit.engine.stops import SequenceEnd

_MASKED = np.float32(-1e9)  # a logit no search picks


@dataclass(eq=False)
class Row:
    """One sequence of a batch, and the request it answers while it is live."""

    job: Job | None
    slot: int
    sampler: TokenSampler
    stream: Any  # og.TokenizerStream: token -> text piece, UTF-8 safe
    end: SequenceEnd
    prompt_tokens: int
    generated: int = 0
    admitted_at: float = field(default_factory=time.perf_counter)
    first_token_at: float = 0.0

    @property
    def live(self) -> bool:
        return self.job is not None

    @property
    def tokens(self) -> int:
        """Prompt plus generated tokens: what this sequence holds in the KV cache."""
        return self.prompt_tokens + self.generated

    def event(self, text: str, tokens: list[int], finish: FinishReason | None = None,
              error: str | None = None) -> TokenEvent:
        assert self.job is not None
        ev = TokenEvent(text=text, token_ids=tokens, finish_reason=finish, prompt_tokens=self.prompt_tokens,
                        completion_tokens=self.generated, error=error)
        if finish is not None:
            now = time.perf_counter()
            first = self.first_token_at or now
            ev.timings = {"queue_s": self.admitted_at - self.job.enqueued_at, "prompt_s": first - self.admitted_at,
                          "generation_s": now - first, "total_s": now - self.job.enqueued_at}
        return ev


def needs_own_batch(prompt: list[int], pad: int) -> bool:
    """A prompt ending with the pad token cannot be right-padded beside others."""
    return bool(prompt) and prompt[-1] == pad


def max_length(prompts: list[list[int]], budgets: list[int], context: int) -> int:
    """The generator's length: the longest prompt plus the largest budget, within the context."""
    return min(context, max(len(p) for p in prompts) + max(budgets))


class OnnxBatch:
    """A generator over ``rows``; created with the prompts already read (the prefill)."""

    def __init__(self, og: Any, model: Any, rows: list[Row], prompts: list[list[int]], *, batch_id: int,
                 length: int, pad: int, filler: int) -> None:
        self.id = batch_id
        self.rows = rows
        self.filler = filler
        params = og.GeneratorParams(model)
        params.set_search_options(batch_size=len(rows), max_length=length, do_sample=False)
        self.generator: Any = og.Generator(model, params)
        self.generator.append_tokens(_right_padded(prompts, pad))

    @property
    def live_rows(self) -> list[Row]:
        return [r for r in self.rows if r.live]

    def exhausted(self) -> bool:
        """The generator reached its length (every row ends with ``length``)."""
        return bool(self.generator.is_done())

    def next_tokens(self) -> list[int]:
        """Pick every live row's next token with its own sampler and advance the generator."""
        logits = np.asarray(self.generator.get_logits(), dtype=np.float32)
        rows = logits.reshape(len(self.rows), -1)
        chosen = [row.sampler.pick(rows[i]) if row.live else self.filler for i, row in enumerate(self.rows)]
        forced = np.full(rows.shape, _MASKED, dtype=np.float32)
        forced[np.arange(len(chosen)), chosen] = 0.0
        self.generator.set_logits(forced.reshape(logits.shape))
        self.generator.generate_next_token()
        return chosen

    def close(self) -> None:
        self.generator = None  # frees the batch's KV cache


def _right_padded(prompts: list[list[int]], pad: int) -> np.ndarray:
    width = max(len(p) for p in prompts)
    out = np.full((len(prompts), width), pad, dtype=np.int32)
    for i, prompt in enumerate(prompts):
        out[i, :len(prompt)] = prompt
    return out
