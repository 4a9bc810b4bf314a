"""Prompt-lookup speculative decoding never changes the output, only how many steps it takes.

Two engines on the embedded model, speculation on and off, decode the same requests; greedy and
seeded outputs must match token for token, at every way a sequence can end inside a draft.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from slmkit.engine.base import FinishReason, GenerationRequest, SamplingParams, TokenLogprob
from slmkit.engine.llamacpp.engine import LlamaCppEngine
from slmkit.engine.llamacpp.grammar import json_object_grammar
from slmkit.engine.llamacpp.scheduler import Scheduler
from slmkit.engine.llamacpp.speculative import NgramIndex, SpecState, StepCost, one_graph
from slmkit.settings import EngineSettings
from slmkit.store.embedded import EMBEDDED

PASSAGE = ("The lighthouse at Cape Mora was built in 1871 from granite quarried on the island itself. Its lamp, "
           "first fuelled by whale oil and later by kerosene, could be seen from twenty-two nautical miles. In 1932 "
           "the keeper, Elias Varga, kept the light burning through a storm that lasted four days, and his logbook "
           "records that he slept only in the afternoons.")
COPY = f"Copy this passage exactly, word for word:\n\n{PASSAGE}"
OTHERS = {f"{PASSAGE}\n\nQuote the sentence about the storm, then explain it.": 32,
          "Write a short story about a dragon who bakes bread.": 24}
GREEDY = SamplingParams(temperature=0)


@dataclass
class Run:
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish: FinishReason | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, LlamaCppEngine]]:
    path: Path = EMBEDDED["smollm2-135m-instruct"].path()
    made = {mode: LlamaCppEngine(mode, path, EngineSettings(parallel=2, ctx_size=1024, threads=2, speculative=mode))
            for mode in ("ngram", "off")}
    yield made
    for engine in made.values():
        engine.close()


@pytest.fixture(scope="module")
async def plain_copy(engines: dict[str, LlamaCppEngine]) -> Run:
    """The copy prompt decoded without speculation: what every speculative variant must give."""
    return await run(engines["off"], chat(engines["off"], COPY), max_tokens=80)


def chat(engine: LlamaCppEngine, content: str) -> list[int]:
    return engine.chat_tokens(engine.render_chat([{"role": "user", "content": content}]))


async def run(engine: LlamaCppEngine, prompt: list[int], sampling: SamplingParams = GREEDY, *,
              cancel_after: int = 0, **kwargs: object) -> Run:
    out = Run()
    stream = engine.generate(GenerationRequest(prompt=prompt, sampling=sampling, **kwargs))  # type: ignore[arg-type]
    async for event in stream:
        out.tokens += event.token_ids
        out.text += event.text
        out.logprobs += event.logprobs
        out.finish = event.finish_reason
        if cancel_after and len(out.tokens) >= cancel_after:
            stream.cancel()
            break
    return out


def spec_counts(engine: LlamaCppEngine) -> tuple[float, float]:
    stats = engine.stats()
    return stats["spec_draft_tokens_total"], stats["spec_accepted_tokens_total"]


async def test_greedy_output_is_identical(engines: dict[str, LlamaCppEngine], plain_copy: Run) -> None:
    on, off = engines["ngram"], engines["off"]
    before = spec_counts(on)
    fast = await run(on, chat(on, COPY), max_tokens=80)
    assert (fast.tokens, fast.text, fast.finish) == (plain_copy.tokens, plain_copy.text, plain_copy.finish)
    drafted, accepted = (a - b for a, b in zip(spec_counts(on), before, strict=True))
    assert 0 < accepted <= drafted  # the copy prompt was decoded with accepted drafts
    for content, limit in OTHERS.items():
        prompt = chat(on, content)
        fast, plain = await run(on, prompt, max_tokens=limit), await run(off, prompt, max_tokens=limit)
        assert (fast.tokens, fast.text, fast.finish) == (plain.tokens, plain.text, plain.finish), content
    assert spec_counts(off) == (0, 0)


class Trace:
    """Records how each sequence ended: in a verification step or not, and if so the tokens
    emitted and the draft tokens accepted in that step before the end. Draft lengths follow
    acceptance alone here (not the timing of this machine's steps), so every run drafts alike."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(StepCost, "threshold", lambda self, outputs, tokens: 0.05)
        self.ends: list[tuple[int, int] | None] = []
        self.step: tuple[int, int] | None = None
        verify, finish = Scheduler._verify, Scheduler._finish

        def traced_verify(scheduler: Scheduler, slot: Any, spec: SpecState) -> None:
            self.step = (slot.generated, spec.accepted)
            verify(scheduler, slot, spec)
            self.step = None

        def traced_finish(scheduler: Scheduler, slot: Any, *args: Any) -> None:
            # recorded before the final event leaves, so the test sees it once the stream ends
            start = self.step
            self.ends.append(None if start is None else (slot.generated - start[0], slot.spec.accepted - start[1]))
            finish(scheduler, slot, *args)

        monkeypatch.setattr(Scheduler, "_verify", traced_verify)
        monkeypatch.setattr(Scheduler, "_finish", traced_finish)


async def test_a_stop_string_inside_an_accepted_draft(engines: dict[str, LlamaCppEngine], plain_copy: Run,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    prompt, plain = chat(engines["off"], COPY), plain_copy
    trace = Trace(monkeypatch)
    for stop in ("whale", "Varga", "logbook"):
        assert stop in plain.text
        fast = await run(engines["ngram"], prompt, max_tokens=80, stop=[stop])
        assert (fast.text, fast.finish) == (plain.text[:plain.text.index(stop)], FinishReason.STOP), stop
    # the token that completed a stop string was an accepted draft token
    assert any(end is not None and end[0] == end[1] for end in trace.ends), trace.ends


async def test_max_tokens_reached_in_a_verification_step(engines: dict[str, LlamaCppEngine], plain_copy: Run,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    prompt, plain = chat(engines["off"], COPY), plain_copy
    trace = Trace(monkeypatch)
    for limit in (9, 23, 41):
        fast = await run(engines["ngram"], prompt, max_tokens=limit)
        assert fast.tokens == plain.tokens[:limit] and fast.finish is FinishReason.LENGTH, limit
    assert any(end is not None and end[0] > 1 for end in trace.ends), trace.ends  # ended after accepted drafts


async def test_a_cancelled_request_leaves_a_consistent_cache(engines: dict[str, LlamaCppEngine]) -> None:
    on, off = engines["ngram"], engines["off"]
    prompt = chat(on, COPY)
    before = spec_counts(on)[1]
    cut = await run(on, prompt, max_tokens=200, cancel_after=24)
    assert cut.finish is None and spec_counts(on)[1] > before  # stopped while drafts were being accepted
    # the slot keeps the prompt and the verified output; a follow-up turn reuses that KV cache
    follow = prompt + cut.tokens + on.tokenize(" Now say it again.", add_special=False)
    fast, plain = await run(on, follow, max_tokens=24), await run(off, follow, max_tokens=24)
    assert fast.tokens == plain.tokens


async def test_logprobs_match(engines: dict[str, LlamaCppEngine]) -> None:
    prompt = chat(engines["off"], COPY)
    fast = await run(engines["ngram"], prompt, max_tokens=32, logprobs=2)
    plain = await run(engines["off"], prompt, max_tokens=32, logprobs=2)
    assert fast.tokens == plain.tokens and len(fast.logprobs) == len(plain.logprobs) == 32
    for a, b in zip(fast.logprobs, plain.logprobs, strict=True):
        assert a.token == b.token and abs(a.logprob - b.logprob) < 1e-3
        assert [t[0] for t in a.top] == [t[0] for t in b.top]


async def test_grammar_constrained_output_is_identical(engines: dict[str, LlamaCppEngine]) -> None:
    prompt = chat(engines["off"], f'{PASSAGE}\n\nAnswer in JSON: {{"keeper": ..., "year_built": ...}}')
    sampling = SamplingParams(temperature=0, grammar=json_object_grammar())
    fast, plain = await run(engines["ngram"], prompt, sampling, max_tokens=32), await run(
        engines["off"], prompt, sampling, max_tokens=32)
    assert fast.tokens == plain.tokens and fast.text.lstrip().startswith("{")


async def test_seeded_sampling_reproduces_and_matches(engines: dict[str, LlamaCppEngine]) -> None:
    prompt = chat(engines["off"], COPY)
    sampling = SamplingParams(temperature=0.7, seed=1234)
    first = await run(engines["ngram"], prompt, sampling, max_tokens=32)
    again = await run(engines["ngram"], prompt, sampling, max_tokens=32)
    plain = await run(engines["off"], prompt, sampling, max_tokens=32)
    assert first.tokens == again.tokens == plain.tokens  # the sampler's draws are those of plain decoding


async def test_a_request_can_opt_out(engines: dict[str, LlamaCppEngine]) -> None:
    on = engines["ngram"]
    before = spec_counts(on)
    out = await run(on, chat(on, COPY), SamplingParams(temperature=0, speculative=False), max_tokens=24)
    assert len(out.tokens) == 24 and spec_counts(on) == before


def test_ngram_drafts_continue_the_latest_match() -> None:
    index = NgramIndex([5, 6, 7, 8, 9, 1, 2, 6, 7, 3, 4])
    assert index.draft(3) == []  # (3, 4) and (4,) never occurred before
    for token in (5, 6, 7):
        index.push(token)
    assert index.draft(2) == [8, 9]  # (6, 7) occurred later, but the longest match wins
    assert NgramIndex([1, 2, 3, 9, 1, 2, 3]).draft(5) == [9, 1, 2, 3]


def test_draft_length_follows_acceptance_and_cost() -> None:
    spec = SpecState(NgramIndex())
    assert spec.length(0.1, 16) > spec.length(0.4, 16) > 0
    for _ in range(8):
        spec.verified(drafted=3, accepted=0)
    lengths = [spec.length(0.3, 16) for _ in range(32)]
    assert lengths.count(0) >= 30 and 1 in lengths  # rejected drafts stop, with a rare one-token probe
    for _ in range(8):
        spec.verified(drafted=4, accepted=4)
    assert spec.length(0.3, 16) >= 6 and spec.length(0.3, 2) == 2


def fitted_cost(a: float = 0.006, b: float = 0.004) -> StepCost:
    cost = StepCost()
    for _ in range(8):
        for tokens in (1, 3, 5):
            cost.observe(tokens, a + b * tokens, a + b * tokens)
    return cost


def test_step_cost_fit_and_threshold() -> None:
    cost = fitted_cost()
    cost.observe(1, 5.0, 5.0)  # a stall of a busy machine moves no median
    a, b = cost.fit() or (0, 0)
    assert a == pytest.approx(0.006) and b == pytest.approx(0.004)
    assert cost.threshold(1, 1) < cost.threshold(8, 8) < 1  # drafts are dearer when the step is full


def test_beside_other_sequences_a_draft_must_earn_its_own_graph_evaluation() -> None:
    cost = fitted_cost()
    assert cost.entry(1, 1) == 0.0  # a lone sequence's draft joins its decode token's graph
    threshold, entry = cost.threshold(8, 8), cost.entry(8, 8)
    assert threshold == pytest.approx(0.032 / 0.038) and entry == pytest.approx(0.048 / 0.038)
    likely = SpecState(NgramIndex(), hits=9.0, misses=1.0)  # 90% of its draft tokens accepted
    assert likely.length(threshold, 16) == 1  # per token, the first one would pay...
    assert likely.length(threshold, 16, entry, streams=8) == 0  # ...but not the extra evaluation
    assert likely.length(cost.threshold(1, 1), 16, cost.entry(1, 1)) >= 4  # alone, it drafts
    copying = SpecState(NgramIndex(), hits=60.0, misses=0.01)
    assert copying.length(threshold, 16, entry, streams=8) == 10  # a near-perfect copier still pays


def test_probes_are_shared_out_over_the_streams_and_only_where_drafts_could_pay() -> None:
    cost = fitted_cost()
    threshold, entry = cost.threshold(8, 8), cost.entry(8, 8)
    idle = SpecState(NgramIndex(), hits=0.0, misses=5.0)
    lengths = [idle.length(threshold, 16, entry, streams=8) for _ in range(256)]
    assert lengths.count(1) == 2 and lengths.count(0) == 254  # one probe per 16 * 8 steps
    # room for 4 draft tokens: even a perfect draft buys 4 tokens for a graph evaluation that yields 8
    assert not any(idle.length(threshold, 4, entry, streams=8) for _ in range(256))


def test_which_steps_are_one_graph_evaluation() -> None:
    assert one_graph([0, 1, 2, 3], drafting=0) and one_graph([5], drafting=1) and one_graph([], drafting=0)
    assert not one_graph([0, 2, 3], drafting=0)  # a free slot between busy ones splits the step
    assert not one_graph([0, 1], drafting=1)  # a draft beside another sequence's token runs on its own
