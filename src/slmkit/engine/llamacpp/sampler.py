"""Per-sequence sampler chains built from SamplingParams (all sampling runs in llama.cpp)."""

from __future__ import annotations

import ctypes

import llama_cpp as ll

from slmkit.engine.base import SamplingParams
from slmkit.engine.llamacpp.bindings import Context, Model
from slmkit.engine.llamacpp.lazy_grammar import GrammarGate
from slmkit.errors import InvalidRequest


class Sampler:
    """Owns one ``llama_sampler`` chain; ``sample`` picks and accepts the next token."""

    def __init__(self, model: Model, params: SamplingParams, *, n_ctx: int = 0) -> None:
        self.gate: GrammarGate | None = None
        self.chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
        try:
            for stage in _stages(model, params, n_ctx or model.n_ctx_train):
                ll.llama_sampler_chain_add(self.chain, stage)
            # a grammar is checked lazily, outside the chain (see lazy_grammar.py)
            self.gate = GrammarGate(model, params.grammar) if params.grammar else None
        except BaseException:
            self.close()
            raise

    def sample(self, ctx: Context, index: int) -> int:
        if self.gate is not None:
            return self.gate.sample(self.chain, ctx, index)
        return int(ll.llama_sampler_sample(self.chain, ctx.ptr, index))

    def accept(self, token: int) -> None:
        ll.llama_sampler_accept(self.chain, token)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.close()
        if self.chain:
            ll.llama_sampler_free(self.chain)
            self.chain = None


def _stages(model: Model, p: SamplingParams, n_ctx: int) -> list[ctypes.c_void_p]:
    """The chain's stages (no grammar: see GrammarGate). Values were bounded by the protocol
    models; ``repeat_last_n`` is cut to the context here (-1: the whole context), since a
    longer window sees nothing more and its buffer is allocated up front."""
    stages = []
    bias = {**p.logit_bias, **dict.fromkeys(model.eog_tokens, float("-inf"))} if p.ignore_eos else p.logit_bias
    if bias:
        stages.append(_logit_bias(model, bias))
    if p.repeat_penalty != 1.0 or p.presence_penalty or p.frequency_penalty:
        last_n = n_ctx if p.repeat_last_n < 0 else min(p.repeat_last_n, n_ctx)
        stages.append(ll.llama_sampler_init_penalties(
            model.n_vocab, last_n, p.repeat_penalty, p.frequency_penalty, p.presence_penalty))
    if p.greedy:
        stages.append(ll.llama_sampler_init_greedy())
        return stages
    if p.top_k > 0:
        stages.append(ll.llama_sampler_init_top_k(p.top_k))
    if 0.0 < p.typical_p < 1.0:
        stages.append(ll.llama_sampler_init_typical(p.typical_p, 1))
    if 0.0 < p.top_p < 1.0:
        stages.append(ll.llama_sampler_init_top_p(p.top_p, 1))
    if p.min_p > 0.0:
        stages.append(ll.llama_sampler_init_min_p(p.min_p, 1))
    stages.append(ll.llama_sampler_init_temp(p.temperature))
    seed = ll.LLAMA_DEFAULT_SEED if p.seed is None else p.seed & 0xFFFFFFFF
    stages.append(ll.llama_sampler_init_dist(seed))
    return stages


def _logit_bias(model: Model, bias: dict[int, float]) -> ctypes.c_void_p:
    arr = (ll.llama_logit_bias * len(bias))()
    for i, (token, value) in enumerate(bias.items()):
        if not 0 <= token < model.n_vocab:
            raise InvalidRequest(f"logit_bias token id {token} is outside the vocabulary", param="logit_bias")
        arr[i].token = token  # type: ignore[assignment]
        arr[i].bias = value
    return ll.llama_sampler_init_logit_bias(model.n_vocab, len(bias), arr)  # type: ignore[no-any-return]
