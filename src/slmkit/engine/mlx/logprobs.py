"""Log-probabilities of the chosen token and its top alternatives, from the row of
log-probabilities mlx-lm reports with each token (the model's, before any sampling transform)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from slmkit.engine.base import TokenLogprob


def token_logprob(row: Any, token: int, top_n: int, decode: Callable[[list[int]], str]) -> TokenLogprob:
    import mlx.core as mx

    values = np.asarray(row.astype(mx.float32), dtype=np.float32)
    top: list[tuple[str, float, list[int]]] = []
    if top_n > 0:
        best = np.argpartition(-values, top_n)[:top_n]
        best = best[np.argsort(-values[best])]
        top = [_entry(decode, int(t), float(values[t])) for t in best]
    text, logprob, raw = _entry(decode, token, float(values[token]))
    return TokenLogprob(token=text, logprob=logprob, bytes=raw, top=top)


def _entry(decode: Callable[[list[int]], str], token: int, logprob: float) -> tuple[str, float, list[int]]:
    text = decode([token])
    return text, max(logprob, -9999.0), list(text.encode("utf-8"))
