"""Which sampling parameters onnxruntime-genai can honour, and its search options for the rest."""

from __future__ import annotations

from typing import Any

from slmkit.engine.base import GenerationRequest, SamplingParams
from slmkit.errors import InvalidRequest

_DEFAULTS = SamplingParams()


def unsupported(request: GenerationRequest) -> list[str]:
    """The request fields this engine cannot honour (refused with a 400 naming them)."""
    s = request.sampling
    names = []
    if s.min_p not in (0.0, _DEFAULTS.min_p):
        names.append("min_p")
    if s.typical_p != 1.0:
        names.append("typical_p")
    if s.presence_penalty != 0.0:
        names.append("presence_penalty")
    if s.frequency_penalty != 0.0:
        names.append("frequency_penalty")
    if s.logit_bias:
        names.append("logit_bias")
    if s.ignore_eos:
        names.append("ignore_eos")
    if s.grammar is not None:
        names.append("response_format")
    if request.logprobs is not None:
        names.append("logprobs")
    return names


def check_supported(request: GenerationRequest) -> None:
    names = unsupported(request)
    if names:
        raise InvalidRequest(f"the ONNX Runtime engine does not support {', '.join(names)}; "
                             "serve the GGUF model with the llama.cpp engine for these", param=names[0])


def search_options(sampling: SamplingParams, max_length: int) -> dict[str, Any]:
    """``GeneratorParams.set_search_options`` arguments for one request."""
    options: dict[str, Any] = {"max_length": max_length, "batch_size": 1}
    if sampling.greedy:
        options.update(do_sample=False, top_k=1)
    else:
        options.update(do_sample=True, temperature=sampling.temperature,
                       top_k=sampling.top_k if sampling.top_k > 0 else 0, top_p=min(max(sampling.top_p, 0.0), 1.0))
    if sampling.repeat_penalty != 1.0:
        options["repetition_penalty"] = sampling.repeat_penalty
    if sampling.seed is not None:
        options["random_seed"] = sampling.seed
    return options
