"""What one request measured, and the statistics of a run built from them."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PERCENTILES = (50, 90, 95, 99)


@dataclass
class RequestRecord:
    """One request as the client saw it. Times are seconds; ``start_s`` is relative to the
    start of its run, the others to the request's own start."""

    index: int
    start_s: float
    ttft_s: float | None = None
    e2e_s: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int = 0
    max_tokens: int = 0
    chunks: int = 0
    token_source: str = "none"  # usage | tokenizer | chunks | none
    finish_reason: str | None = None
    # connect | timeout | http_<status> | stream_error | incomplete | disconnect | protocol | cancelled
    error_kind: str | None = None
    error: str | None = None
    server_timing: dict[str, float] | None = None
    chunk_times: list[float] = field(default_factory=list, repr=False)
    text: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        return self.error_kind is None

    @property
    def itl(self) -> list[float]:
        """Gaps between successive streamed chunks (inter-token latency)."""
        times = self.chunk_times
        return [b - a for a, b in itertools.pairwise(times)]

    @property
    def tokens_per_s(self) -> float | None:
        """Output tokens/s of this request after its first token (decode speed)."""
        if self.ttft_s is None or self.e2e_s is None or self.output_tokens < 2:
            return None
        span = self.e2e_s - self.ttft_s
        return (self.output_tokens - 1) / span if span > 0 else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("chunk_times")
        data.pop("text")
        data["tokens_per_s"] = self.tokens_per_s
        return data


def distribution(values: Sequence[float]) -> dict[str, float] | None:
    """mean, min, max and p50/p90/p95/p99 of ``values`` (None when there are none)."""
    if not values:
        return None
    arr = np.asarray(values, dtype=float)
    out = {"count": float(arr.size), "mean": float(arr.mean()), "min": float(arr.min()), "max": float(arr.max())}
    for p, v in zip(PERCENTILES, np.percentile(arr, PERCENTILES), strict=True):
        out[f"p{p}"] = float(v)
    return out


def summarize(records: Sequence[RequestRecord], duration_s: float) -> dict[str, Any]:
    """The figures of one run. Aggregate rates divide by the run's wall time."""
    done = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok]
    output = sum(r.output_tokens for r in records)
    sources = Counter(r.token_source for r in records if r.output_tokens)
    return {
        "requests": {"sent": len(records), "completed": len(done), "failed": len(failed)},
        "errors": dict(Counter(r.error_kind or "" for r in failed)),
        "error_examples": {kind: next(r.error for r in failed if r.error_kind == kind)
                           for kind in {r.error_kind for r in failed} if kind},
        "duration_s": duration_s,
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in records),
        "output_tokens": output,
        "requested_output_tokens": sum(r.max_tokens for r in done),
        "completed_output_tokens": sum(r.output_tokens for r in done),
        "token_sources": dict(sources),
        "requests_per_s": len(done) / duration_s if duration_s > 0 else 0.0,
        "output_tokens_per_s": output / duration_s if duration_s > 0 else 0.0,
        "ttft_s": distribution([r.ttft_s for r in done if r.ttft_s is not None]),
        "itl_s": distribution([gap for r in done for gap in r.itl]),
        "e2e_s": distribution([r.e2e_s for r in done if r.e2e_s is not None]),
        "request_tokens_per_s": distribution([t for r in done if (t := r.tokens_per_s) is not None]),
    }
