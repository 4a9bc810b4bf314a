"""The ONNX engine's per-sequence sampler (numpy over one logits row) and its refusals."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from slmkit.engine.base import GenerationRequest, SamplingParams
from slmkit.engine.onnx.sampling import TokenSampler, check_supported, unsupported
from slmkit.errors import InvalidRequest

LOGITS = np.array([1.0, 3.0, 2.5, -1.0, 0.0], dtype=np.float32)


def _pick_many(params: SamplingParams, n: int = 400) -> set[int]:
    sampler = TokenSampler(replace(params, seed=0))  # seeded: the same draws every run
    return {sampler.pick(LOGITS) for _ in range(n)}


def test_greedy_is_argmax_and_logit_bias_moves_it() -> None:
    assert TokenSampler(SamplingParams(temperature=0)).pick(LOGITS) == 1
    assert TokenSampler(SamplingParams(temperature=0, logit_bias={1: -100.0})).pick(LOGITS) == 2
    assert TokenSampler(SamplingParams(temperature=0, logit_bias={4: 10.0})).pick(LOGITS) == 4


def test_top_k_top_p_and_min_p_cut_the_tail() -> None:
    assert _pick_many(SamplingParams(temperature=1.5, top_k=2, top_p=1.0, min_p=0.0)) == {1, 2}
    assert _pick_many(SamplingParams(temperature=1.5, top_k=0, top_p=0.5, min_p=0.0)) == {1}
    # p(2)/p(1) = e^-0.5 = 0.61 > 0.5 > p(0)/p(1) = e^-2 = 0.14
    assert _pick_many(SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.5)) == {1, 2}
    assert _pick_many(SamplingParams(temperature=1.5, top_k=0, top_p=1.0, min_p=0.0)) == {0, 1, 2, 3, 4}


def test_seeded_streams_repeat_and_differ_by_seed() -> None:
    def run(seed: int) -> list[int]:
        sampler = TokenSampler(SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=seed))
        return [sampler.pick(LOGITS) for _ in range(40)]

    assert run(7) == run(7) and run(7) != run(8)
    assert run(-1) == run(-1)  # negative seeds are taken modulo 2**32, as llama.cpp does


def test_penalties_apply_to_recent_generated_tokens() -> None:
    sampler = TokenSampler(SamplingParams(temperature=0, repeat_penalty=2.0, repeat_last_n=2))
    sampler.accept(1)
    assert sampler.pick(LOGITS) == 2  # 3.0 / 2 = 1.5 < 2.5
    sampler.accept(3)
    sampler.accept(4)
    assert sampler.pick(LOGITS) == 1  # token 1 left the window of the last 2
    presence = TokenSampler(SamplingParams(temperature=0, presence_penalty=1.0))
    presence.accept(1)
    assert presence.pick(LOGITS) == 2  # 3.0 - 1.0 < 2.5
    frequency = TokenSampler(SamplingParams(temperature=0, frequency_penalty=0.3))
    frequency.accept(1)
    assert frequency.pick(LOGITS) == 1  # 2.7 > 2.5
    frequency.accept(1)
    assert frequency.pick(LOGITS) == 2  # 2.4 < 2.5


@pytest.mark.parametrize(("request_", "param"), [
    (GenerationRequest(prompt=[1], logprobs=0), "logprobs"),
    (GenerationRequest(prompt=[1], sampling=SamplingParams(typical_p=0.5)), "typical_p"),
    (GenerationRequest(prompt=[1], sampling=SamplingParams(grammar='root ::= "a"')), "response_format"),
    (GenerationRequest(prompt=[1], prompt_logprobs=1), "echo"),  # prompt scoring (echo with logprobs)
])
def test_refused_parameters_are_named(request_: GenerationRequest, param: str) -> None:
    assert unsupported(request_) == [param]
    with pytest.raises(InvalidRequest) as info:
        check_supported(request_, vocab_size=100)
    assert info.value.param == param and param in info.value.message


def test_logit_bias_outside_the_vocabulary_is_refused() -> None:
    ok = GenerationRequest(prompt=[1], sampling=SamplingParams(min_p=0.2, presence_penalty=1.0, logit_bias={5: 1.0}))
    check_supported(ok, vocab_size=100)
    with pytest.raises(InvalidRequest) as info:
        check_supported(GenerationRequest(prompt=[1], sampling=SamplingParams(logit_bias={100: 1.0})), vocab_size=100)
    assert info.value.param == "logit_bias"
