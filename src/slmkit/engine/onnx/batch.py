"""A sequence of the ONNX engine's running batch, and the request it answers while it is live."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from slmkit.engine.admission import Job
from slmkit.engine.base import FinishReason, TokenEvent
from slmkit.engine.onnx.sampling import TokenSampler
from slmkit.engine.stops import SequenceEnd


@dataclass(eq=False)
class Row:
    """One sequence: its request while it is live, its sampler, stops and counts."""

    job: Job | None
    slot: int
    sampler: TokenSampler
    stream: Any  # og.TokenizerStream: token -> text piece, UTF-8 safe
    end: SequenceEnd
    prompt_tokens: int
    generated: int = 0
    admitted_at: float = field(default_factory=time.perf_counter)
    first_token_at: float = 0.0
    cached: int = 0  # tokens in its KV cache: the prompt as it is read (in chunks), then one per step
    last: int = -1  # the token it reads next step (its latest output)

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
        if finish is FinishReason.STOP:
            ev.stop_sequence = self.end.stops.matched
        if finish is not None:
            now = time.perf_counter()
            first = self.first_token_at or now
            ev.timings = {"queue_s": self.admitted_at - self.job.enqueued_at, "prompt_s": first - self.admitted_at,
                          "generation_s": now - first, "total_s": now - self.job.enqueued_at}
        return ev
