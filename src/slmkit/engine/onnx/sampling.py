"""Per-sequence sampling for the ONNX engine, from the logits onnxruntime-genai exposes.

onnxruntime-genai's search options (temperature, top_k, top_p, seed ...) belong to a whole
generator, and so to every sequence of a batch alike, with one random stream. To batch requests
that ask for different things, the engine reads each step's logits (``get_logits``), picks
every sequence's token here, and hands back one-hot logits (``set_logits``) that the generator's
greedy search takes as they are. Each request so gets its own sampling and its own seeded random
stream: its output does not depend on which requests share its batch.

The chain mirrors the llama.cpp engine's: logit bias, penalties (over the last
``repeat_last_n`` generated tokens), then greedy, or top-k, top-p, min-p (on the untempered
distribution), temperature, and a draw.
"""

from __future__ import annotations

import numpy as np

from slmkit.engine.base import GenerationRequest, SamplingParams
from slmkit.errors import InvalidRequest


def unsupported(request: GenerationRequest) -> list[str]:
    """The request fields this engine cannot honour (refused with a 400 naming them)."""
    s = request.sampling
    names = []
    if s.typical_p != 1.0:
        names.append("typical_p")
    if s.grammar is not None:
        names.append("response_format")
    if request.logprobs is not None:
        names.append("logprobs")
    if request.prompt_logprobs is not None:  # scoring the prompt (echo with logprobs)
        names.append("echo")
    return names


def check_supported(request: GenerationRequest, vocab_size: int) -> None:
    names = unsupported(request)
    if names:
        raise InvalidRequest(f"the ONNX Runtime engine does not support {', '.join(names)}; "
                             "serve the GGUF model with the llama.cpp engine for these", param=names[0])
    for token in request.sampling.logit_bias:
        if token < 0 or (vocab_size and token >= vocab_size):
            raise InvalidRequest(f"logit_bias token id {token} is outside the vocabulary", param="logit_bias")


class TokenSampler:
    """Picks one sequence's next token from its logits row."""

    def __init__(self, params: SamplingParams) -> None:
        self.params = params
        self.rng = np.random.default_rng(None if params.seed is None else params.seed & 0xFFFFFFFF)
        self.history: list[int] = []  # generated tokens, for the penalties

    def accept(self, token: int) -> None:
        self.history.append(token)

    def pick(self, logits: np.ndarray) -> int:
        p = self.params
        x = logits.astype(np.float64, copy=True)
        for token, bias in p.logit_bias.items():
            if token < x.size:
                x[token] += bias
        self._penalize(x)
        if p.greedy:
            return int(np.argmax(x))
        ids = np.arange(x.size)
        if 0 < p.top_k < x.size:
            ids = np.argpartition(x, -p.top_k)[-p.top_k:]
        logit = x[ids]
        order = np.argsort(-logit, kind="stable")
        ids, logit = ids[order], logit[order]
        keep = len(ids)
        if 0.0 < p.top_p < 1.0:
            probs = _softmax(logit)
            keep = min(keep, int(np.searchsorted(np.cumsum(probs), p.top_p)) + 1)
        if p.min_p > 0.0:
            keep = min(keep, max(1, int(np.sum(logit >= logit[0] + np.log(p.min_p)))))
        ids, logit = ids[:keep], logit[:keep]
        probs = _softmax(logit / p.temperature)
        return int(ids[self.rng.choice(len(ids), p=probs)])

    def _penalize(self, x: np.ndarray) -> None:
        p = self.params
        if (p.repeat_penalty == 1.0 and not p.presence_penalty and not p.frequency_penalty) or not self.history:
            return
        window = self.history if p.repeat_last_n < 0 else self.history[max(0, len(self.history) - p.repeat_last_n):]
        if not window:
            return
        tokens, counts = np.unique(np.asarray(window), return_counts=True)
        values = x[tokens]
        if p.repeat_penalty != 1.0:
            values = np.where(values > 0, values / p.repeat_penalty, values * p.repeat_penalty)
        x[tokens] = values - counts * p.frequency_penalty - p.presence_penalty


def _softmax(logit: np.ndarray) -> np.ndarray:
    e = np.exp(logit - logit.max())
    return np.asarray(e / e.sum())
