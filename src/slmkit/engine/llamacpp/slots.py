"""One slot: a KV sequence in the context, and the request (if any) decoding in it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from slmkit.engine.admission import Job
from slmkit.engine.base import FinishReason, TokenEvent, TokenLogprob
from slmkit.engine.llamacpp.sampler import Sampler
from slmkit.engine.llamacpp.speculative import SpecState
from slmkit.engine.stops import SequenceEnd, Utf8Stream


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass(eq=False)
class Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # tokens whose KV is in the cache
    job: Job | None = None
    pending: list[int] = field(default_factory=list)  # prompt tokens still to read
    sampler: Sampler | None = None
    last_token: int = -1  # sampled, not yet decoded
    batch_index: int = -1  # where this step's logits are, -1 if none
    generated: int = 0
    reused: int = 0
    last_used: float = 0.0
    admitted_at: float = 0.0
    first_token_at: float = 0.0
    text: Utf8Stream = field(default_factory=Utf8Stream)
    end: SequenceEnd = field(default_factory=lambda: SequenceEnd((), None, 0))
    spec: SpecState | None = None  # prompt-lookup speculation, when on for this request
    scores: list[TokenLogprob] | None = None  # prompt scoring: the prompt's logprobs so far (None: off)
    score_rows: list[tuple[int, int]] = field(default_factory=list)  # this step's (batch index, next token)

    @property
    def busy(self) -> bool:
        return self.job is not None

    def start(self, job: Job, reused: int, sampler: Sampler, context_length: int) -> None:
        self.job = job
        self.cached = self.cached[:reused]
        self.pending = job.request.prompt[reused:]
        self.reused = reused
        self.sampler = sampler
        self.generated = 0
        self.last_token = -1
        self.batch_index = -1
        self.text = Utf8Stream()
        self.end = SequenceEnd(job.request.stop, job.request.max_tokens, context_length)
        self.admitted_at = time.perf_counter()
        self.first_token_at = 0.0
        self.scores = None
        self.score_rows = []

    def event(self, text: str, tokens: list[int], finish: FinishReason | None = None,
              error: str | None = None) -> TokenEvent:
        assert self.job is not None
        ev = TokenEvent(text=text, token_ids=tokens, finish_reason=finish,
                        prompt_tokens=len(self.job.request.prompt),
                        completion_tokens=self.generated, cached_tokens=self.reused, error=error)
        if self.scores is not None and len(self.scores) == len(self.job.request.prompt):
            ev.prompt_logprobs, self.scores = self.scores, None  # the first event after the prompt carries them
        if finish is FinishReason.STOP:
            ev.stop_sequence = self.end.stops.matched
        if finish is not None:
            ev.timings = self._timings()
        return ev

    def _timings(self) -> dict[str, float]:
        assert self.job is not None
        now = time.perf_counter()
        first = self.first_token_at or now
        return {
            "queue_s": self.admitted_at - self.job.enqueued_at,
            "prompt_s": first - self.admitted_at,
            "generation_s": now - first,
            "total_s": now - self.job.enqueued_at,
        }

    def release(self) -> None:
        if self.sampler is not None:
            self.sampler.close()
        self.sampler = None
        self.spec = None
        self.job = None
        self.pending = []
        self.batch_index = -1
        self.scores = None
        self.score_rows = []
        self.last_used = time.perf_counter()
