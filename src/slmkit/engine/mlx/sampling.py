"""Per-request sampling for the MLX engine, as a sampler mlx-lm's batch generator calls.

mlx-lm's ``BatchGenerator`` takes one sampler per sequence (a callable from a row of
log-probabilities to the chosen token). Each request gets a ``RequestSampler`` around the same
numpy chain the ONNX engine uses (logit bias, penalties over the generated tokens, greedy or
top-k / top-p / min-p / temperature, and a draw from the request's own seeded random stream), so
a request's output does not depend on which requests share its batch. The sampler records its
own picks: mlx-lm samples a step ahead of the tokens it reports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slmkit.engine.base import GenerationRequest, SamplingParams
from slmkit.engine.onnx.sampling import TokenSampler
from slmkit.errors import InvalidRequest

# server/tools.py builds every tool plan's grammar around this rule: a grammar with it comes from `tools`
_TOOL_RULE = "tc-json ::="


def unsupported(request: GenerationRequest) -> list[str]:
    """The request fields this engine cannot honour (refused with a 400 naming them)."""
    names = []
    if request.sampling.typical_p != 1.0:
        names.append("typical_p")
    grammar = request.sampling.grammar
    if grammar is not None:  # json_object / json_schema / Ollama format, or the calls a tool plan allows
        names.append("tools" if _TOOL_RULE in grammar else "response_format")
    if request.prompt_logprobs is not None:  # scoring the prompt (echo with logprobs)
        names.append("echo")
    return names


def check_supported(request: GenerationRequest, vocab_size: int) -> None:
    names = unsupported(request)
    if names:
        raise InvalidRequest(f"the MLX engine does not support {', '.join(names)}: it has no grammar-constrained "
                             "decoding (JSON mode, schemas, tool calls), typical_p nor prompt scoring (echo with "
                             "logprobs); serve the GGUF model with the "
                             "llama.cpp engine for these", param=names[0])
    for token in request.sampling.logit_bias:
        if token < 0 or (vocab_size and token >= vocab_size):
            raise InvalidRequest(f"logit_bias token id {token} is outside the vocabulary", param="logit_bias")


class RequestSampler:
    """mlx-lm's ``Sampler`` for one sequence: log-probabilities ``(1, vocab)`` -> token ``(1,)``."""

    def __init__(self, params: SamplingParams, mx: Any) -> None:
        self.mx = mx
        self.chain = TokenSampler(params)
        self.plain_greedy = params.greedy and not params.logit_bias and params.repeat_penalty == 1.0 and (
            not params.presence_penalty and not params.frequency_penalty)

    def __call__(self, logprobs: Any) -> Any:
        mx = self.mx
        if self.plain_greedy:  # stays on the device, and lazy
            return mx.argmax(logprobs, axis=-1)
        row = np.asarray(logprobs[0].astype(mx.float32), dtype=np.float32)
        token = self.chain.pick(row)
        self.chain.accept(token)
        return mx.array([token], dtype=mx.uint32)
