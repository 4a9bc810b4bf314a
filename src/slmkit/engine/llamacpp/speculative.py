"""Prompt-lookup (n-gram) speculative decoding: drafts, how long they should be, what they cost.

Much of what a small model writes is copied from its input (extraction, rewriting, quotes,
code edits). The draft for a sequence is what followed the last earlier occurrence of its
final n tokens (prompt and output alike). The scheduler appends the draft to the sequence's
decode token in the same ``llama_decode`` step as every other slot, with logits at each
position, then samples position by position with the request's own sampler: a draft token
is kept only while it equals the token sampled there, so the output is exactly what plain
decoding would give (greedy: the same tokens; with temperature: the same distribution, the
sampler's random draws included). The KV cells of the rejected tail are removed.

A draft token is not free: on a CPU every extra token in a step costs compute, and with many
streams a step is already compute-bound. So each sequence's draft length follows from two
estimates: the probability that its next draft token is accepted (decayed counts of its own
recent verifications) and the cost of one more token in a step, against what a step yields
now (a least-squares fit of step time to batch size). The i-th draft token is worth adding
while ``p**i`` (the chance it becomes an output token) beats the output tokens a step's worth
of time buys, ``b * outputs / step_time``. Beside other sequences a draft also runs as a graph
evaluation of its own (see ``StepCost.entry``), so it must earn that fixed cost ``a`` back
too: at several streams on a CPU, where ``a`` is small against ``b``, drafts rarely do.
Open-ended chat, whose drafts are rejected, falls to no draft at all (with a one-token probe
now and then, so a copying phase is noticed).
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

NGRAM_SIZES = (4, 3, 2)  # longest match first
MAX_DRAFT = 10  # most draft tokens per sequence per step
PROBE_EVERY = 16  # a sequence that drafts nothing tries one token every this many steps
DECAY = 0.85  # weight of older verifications in a sequence's acceptance estimate
PRIOR_HITS, PRIOR_MISSES = 1.0, 1.0
MAX_FIT_TOKENS = 96  # the step-cost fit covers decode steps up to this many tokens


class NgramIndex:
    """A token sequence, and where each of its n-grams last occurred with a continuation."""

    def __init__(self, tokens: list[int] | None = None) -> None:
        self.tokens: list[int] = []
        self.tables: dict[int, dict[tuple[int, ...], int]] = {n: {} for n in NGRAM_SIZES}
        for token in tokens or ():
            self.push(token)

    def push(self, token: int) -> None:
        toks = self.tokens
        toks.append(token)
        end = len(toks) - 1  # the n-grams ending just before the new token now have a continuation
        for n, table in self.tables.items():
            if end >= n:
                table[tuple(toks[end - n:end])] = end

    def draft(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens that followed the latest earlier occurrence of the longest
        matching suffix; empty when none matches."""
        toks = self.tokens
        if limit <= 0:
            return []
        for n, table in self.tables.items():
            if len(toks) > n:
                start = table.get(tuple(toks[-n:]))
                if start is not None:
                    return toks[start:start + limit]
        return []


@dataclass
class SpecState:
    """One request's speculation: its tokens so far, its acceptance estimate, its counts."""

    index: NgramIndex
    hits: float = PRIOR_HITS
    misses: float = PRIOR_MISSES
    idle: int = 0
    drafted: int = 0
    accepted: int = 0
    draft: list[int] = field(default_factory=list)  # this step's draft, being verified
    draft_at: int = -1  # batch index of the draft's first token

    @property
    def rate(self) -> float:
        """Estimated probability that the next draft token is accepted."""
        return self.hits / (self.hits + self.misses)

    def length(self, threshold: float, limit: int, entry: float = 0.0, streams: int = 1) -> int:
        """How many draft tokens are worth verifying: while ``rate**i > threshold``, and none
        unless their expected surplus (the sum of ``rate**i - threshold``) covers ``entry``, what
        a draft costs once whatever its length (StepCost.entry), in output tokens. A sequence
        that drafts nothing probes with one token every ``PROBE_EVERY * streams`` steps (the
        step pays for the probes of all ``streams`` decoding sequences), and only where even a
        perfect draft could pay."""
        p, reach, k, surplus = self.rate, self.rate, 0, 0.0
        most = min(limit, MAX_DRAFT)
        while k < most and reach > threshold:
            k += 1
            surplus += reach - threshold
            reach *= p
        if k > 0 and surplus > entry:
            self.idle = 0
            return k
        self.idle += 1
        # a one-token probe now and then notices a copying phase
        if self.idle >= PROBE_EVERY * streams and most > 0 and most * (1.0 - threshold) > entry:
            self.idle = 0
            return 1
        return 0

    def verified(self, drafted: int, accepted: int) -> None:
        """Update the acceptance estimate after a verification (the counts are kept by the caller)."""
        self.hits = DECAY * self.hits + accepted
        self.misses = DECAY * self.misses + (1 if accepted < drafted else 0)


class StepCost:
    """What a step costs: ``llama_decode`` time as ``a + b * tokens``, fitted to the median
    time of each batch size over its last few steps (medians, as a shared machine's stalls
    would throw a mean off), plus the step's own overhead (building the batch, sampling,
    handing tokens over). Steps that read a prompt chunk are left out: drafts never join those."""

    def __init__(self, prior_ratio: float = 0.5, window: int = 15) -> None:
        self.prior_ratio = prior_ratio  # b / a until there is a fit (2 CPU cores, SmolLM2-135M: ~0.6)
        self.window = window
        self.times: dict[int, deque[float]] = {}
        self.overhead = 0.0
        self._fit: tuple[float, float] | None = None
        self._stale = 0

    def observe(self, tokens: int, decode_s: float, step_s: float) -> None:
        if tokens > MAX_FIT_TOKENS:
            return
        self.times.setdefault(tokens, deque(maxlen=self.window)).append(decode_s)
        self.overhead += 0.05 * (min(max(step_s - decode_s, 0.0), decode_s) - self.overhead)
        self._stale += 1

    def fit(self) -> tuple[float, float] | None:
        """(a, b) in seconds, or None until two batch sizes have been seen a few times each."""
        if self._stale >= 8:
            self._stale = 0
            self._fit = self._compute()
        return self._fit

    def _compute(self) -> tuple[float, float] | None:
        points = [(n, statistics.median(q), len(q)) for n, q in self.times.items() if len(q) >= 3]
        w = sum(c for _, _, c in points)
        if len(points) < 2:
            return None
        mean_n = sum(n * c for n, _, c in points) / w
        mean_t = sum(t * c for _, t, c in points) / w
        var = sum(c * (n - mean_n) ** 2 for n, _, c in points) / w
        b = max(sum(c * (n - mean_n) * (t - mean_t) for n, t, c in points) / w / var, 0.0)
        a = max(mean_t - b * mean_n, 0.05 * mean_t)  # noise can push the intercept below 0
        return a, b

    def threshold(self, outputs: int, tokens: int) -> float:
        """The acceptance probability a draft token must beat, in a step of ``tokens`` tokens
        that yields ``outputs`` output tokens without drafts."""
        _, b, step = self._terms(tokens)
        return b * outputs / step

    def entry(self, outputs: int, tokens: int) -> float:
        """What a draft costs once, in output tokens, in a step of ``tokens`` tokens where
        ``outputs`` sequences decode. With one KV stream per slot, llama.cpp splits a step into
        micro-batches of consecutive sequences with the same number of tokens each, so a draft
        beside other sequences' single tokens is evaluated as a graph of its own and pays a
        step's fixed cost ``a`` again. A lone sequence's draft shares its decode token's graph."""
        if outputs <= 1:
            return 0.0
        a, _, step = self._terms(tokens)
        return a * outputs / step

    def _terms(self, tokens: int) -> tuple[float, float, float]:
        """``(a, b, time of a step of tokens)``; before a fit, in units of ``a`` at the prior ratio."""
        fitted = self.fit()
        if fitted is None:
            return 1.0, self.prior_ratio, 1.0 + self.prior_ratio * tokens
        a, b = fitted
        return a, b, a + b * tokens + self.overhead


def one_graph(seqs: list[int], drafting: int) -> bool:
    """Whether llama.cpp evaluates a decode step as one graph: the decoding sequences' ids
    (ascending, one token each) are consecutive, and no draft sits beside other sequences'
    tokens (``drafting`` sequences carry one). Other steps are split into micro-batches."""
    consecutive = not seqs or seqs[-1] - seqs[0] == len(seqs) - 1
    return consecutive and (drafting == 0 or len(seqs) == 1)
