"""Log-probabilities of the chosen token and its top alternatives, from the raw logits."""

from __future__ import annotations

import numpy as np

from slmkit.engine.base import TokenLogprob
from slmkit.engine.llamacpp.bindings import Context, Model


def token_logprob(model: Model, ctx: Context, index: int, token: int, top_n: int) -> TokenLogprob:
    """The model's log-probability of ``token`` at batch position ``index`` (before any
    sampling transform), with the ``top_n`` most likely tokens."""
    logits = np.ctypeslib.as_array(ctx.logits(index), shape=(model.n_vocab,))
    peak = float(logits.max())
    log_norm = peak + float(np.log(np.exp(logits - peak).sum()))
    top: list[tuple[str, float, list[int]]] = []
    if top_n > 0:
        best = np.argpartition(-logits, top_n)[:top_n]
        best = best[np.argsort(-logits[best])]
        top = [_entry(model, int(t), float(logits[t]) - log_norm) for t in best]
    text, logprob, raw = _entry(model, token, float(logits[token]) - log_norm)
    return TokenLogprob(token=text, logprob=logprob, bytes=raw, top=top)


def first_prompt_token(model: Model, token: int) -> TokenLogprob:
    """A prompt's first token: nothing before it predicts it, so it has no log-probability."""
    text, _, raw = _entry(model, token, 0.0)
    return TokenLogprob(token=text, logprob=None, bytes=raw)


def score(model: Model, ctx: Context, rows: list[tuple[int, int]], top_n: int) -> list[TokenLogprob]:
    """Prompt scoring: for each ``(batch index, next prompt token)`` of the last decode, that
    token's log-probability given the tokens before it."""
    return [token_logprob(model, ctx, index, token, top_n) for index, token in rows]


def _entry(model: Model, token: int, logprob: float) -> tuple[str, float, list[int]]:
    piece = model.piece(token, special=True)
    return piece.decode("utf-8", errors="replace"), max(logprob, -9999.0), list(piece)
