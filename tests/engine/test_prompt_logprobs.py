"""Prompt scoring (``GenerationRequest.prompt_logprobs``, what OpenAI's ``echo`` with
``logprobs`` needs): every prompt token's log-probability given the tokens before it.

The reference is the same text scored token by token through ordinary generation: a request
for ``prompt[:i]`` whose next token is forced to ``prompt[i]`` (a logit bias) reports the raw
log-probability of ``prompt[i]`` (logprobs are taken before any sampling transform)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from slmkit.engine.base import FinishReason, GenerationRequest, SamplingParams, TokenLogprob
from slmkit.engine.llamacpp.engine import LlamaCppEngine
from slmkit.settings import EngineSettings
from slmkit.store.embedded import EMBEDDED

TEXT = "The capital of France is Paris. The capital of Italy is Rome, and the capital of Spain is"
GREEDY = SamplingParams(temperature=0)


@dataclass
class Out:
    tokens: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)
    finish: FinishReason | None = None
    events_with_prompt: int = 0
    cached: int = 0
    completion_tokens: int = 0


@pytest.fixture(scope="module")
def engine() -> Iterator[LlamaCppEngine]:
    """Chunks of 5 prompt tokens a step, so a scored prompt spans several decodes."""
    path: Path = EMBEDDED["smollm2-135m-instruct"].path()
    made = LlamaCppEngine("score", path, EngineSettings(parallel=2, ctx_size=512, threads=2, prefill_chunk=5,
                                                        speculative="off"))
    yield made
    made.close()


async def run(engine: LlamaCppEngine, prompt: list[int], **kwargs: object) -> Out:
    out = Out()
    request = GenerationRequest(prompt=prompt, sampling=kwargs.pop("sampling", GREEDY), **kwargs)  # type: ignore[arg-type]
    async for event in engine.generate(request):
        out.tokens += event.token_ids
        out.logprobs += event.logprobs
        out.prompt_logprobs += event.prompt_logprobs
        out.events_with_prompt += bool(event.prompt_logprobs)
        out.finish = event.finish_reason
        out.cached = event.cached_tokens
        out.completion_tokens = event.completion_tokens
    return out


async def forced(engine: LlamaCppEngine, prefix: list[int], token: int) -> float:
    """log p(token | prefix), through ordinary generation with the token forced."""
    out = await run(engine, prefix, max_tokens=1, logprobs=0,
                    sampling=SamplingParams(temperature=0, logit_bias={token: 100.0}, speculative=False))
    assert out.tokens == [token]
    value = out.logprobs[0].logprob
    assert value is not None
    return value


async def test_prompt_logprobs_equal_token_by_token_scoring(engine: LlamaCppEngine) -> None:
    prompt = engine.tokenize(TEXT)
    scored = await run(engine, prompt, max_tokens=0, prompt_logprobs=2)
    assert scored.finish is FinishReason.LENGTH and scored.tokens == [] and scored.completion_tokens == 0
    assert scored.events_with_prompt == 1 and len(scored.prompt_logprobs) == len(prompt)
    first, rest = scored.prompt_logprobs[0], scored.prompt_logprobs[1:]
    assert first.logprob is None and first.top == [] and first.token == engine.piece(prompt[0])
    assert [lp.token for lp in scored.prompt_logprobs] == [engine.piece(t) for t in prompt]
    reference = [await forced(engine, prompt[:i], prompt[i]) for i in range(1, len(prompt))]
    got = [lp.logprob for lp in rest]
    assert got == pytest.approx(reference, abs=2e-3)
    for lp in rest:  # two alternatives, most likely first, the chosen token's value among them if it is top
        assert len(lp.top) == 2 and lp.top[0][1] >= lp.top[1][1]
        assert lp.logprob is not None and lp.logprob <= lp.top[0][1] + 1e-6
    assert sum(lp.logprob < -5 for lp in rest if lp.logprob is not None) < len(rest) // 2  # sane values


async def test_scoring_reads_the_whole_prompt_and_repeats(engine: LlamaCppEngine) -> None:
    """A slot holding the same prompt is not reused (the logits of every position are needed),
    and scoring twice gives the same values."""
    prompt = engine.tokenize(TEXT)
    await run(engine, prompt, max_tokens=1)  # leaves the prompt cached in a slot
    again = await run(engine, prompt, max_tokens=0, prompt_logprobs=0)
    assert again.cached == 0
    twice = await run(engine, prompt, max_tokens=0, prompt_logprobs=0)
    assert [lp.logprob for lp in twice.prompt_logprobs] == [lp.logprob for lp in again.prompt_logprobs]
    assert all(lp.top == [] for lp in again.prompt_logprobs)


async def test_scoring_then_generating_beside_another_request(engine: LlamaCppEngine) -> None:
    """Scoring with tokens to generate: the prompt's logprobs come once, on the first event,
    then the answer as without scoring; a request decoding beside it is not disturbed."""
    prompt = engine.tokenize(TEXT)
    other = engine.tokenize("Once upon a time, in a small village by the sea,")
    alone = await run(engine, other, max_tokens=12)
    plain = await run(engine, prompt, max_tokens=6, logprobs=1)
    scored, beside = await asyncio.gather(run(engine, prompt, max_tokens=6, logprobs=1, prompt_logprobs=1),
                                          run(engine, other, max_tokens=12))
    assert scored.tokens == plain.tokens and scored.events_with_prompt == 1
    assert len(scored.prompt_logprobs) == len(prompt) and len(scored.logprobs) == len(plain.logprobs)
    assert beside.tokens == alone.tokens
    one = await run(engine, prompt[:1], max_tokens=0, prompt_logprobs=1)  # a single token: only the null entry
    assert [lp.logprob for lp in one.prompt_logprobs] == [None]
