"""Continuous batching in the ONNX engine, in process on the converted int4 model: a request that
arrives while another decodes joins its batch at the next step (counted in decode steps, not
timed), prompts are read in chunks between steps, and rows joining and leaving change no other
row's answer.

The scheduler thread is paused at chosen points (after a given decode step, before admitting)
until the test's event has happened, so every run takes the same steps whatever the machine's
speed. That matters for equality: onnxruntime's int4 kernels compute a step of one row in another
order than a step of several (logits differ by up to ~0.7), so an answer is bitwise fixed by
which of its steps ran alone, and greedy picks can flip at near-ties (docs/models.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from slmkit.engine.base import FinishReason, GenerationRequest, SamplingParams
from slmkit.engine.onnx.engine import OnnxEngine
from slmkit.settings import EngineSettings
from slmkit.store.resolve import resolve_model
from tests.conftest import ONNX_INT4

pytestmark = pytest.mark.slow
EOS = 2  # <|im_end|>, banned where a request must run long
PROMPTS = ["Name three fruits and say why people like each of them.", "Write two sentences about the sea.",
           "Hi!", "Explain in one sentence what a violin is, who plays it and where it is played."]


@dataclass
class Out:
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish: FinishReason | None = None


@pytest.fixture(scope="module")
def engine(onnx_home: dict[str, Any]) -> Iterator[OnnxEngine]:
    folder = resolve_model(ONNX_INT4, onnx_home["home"]).path
    made = OnnxEngine("onnx", folder, EngineSettings(parallel=4, ctx_size=512, threads=2, prefill_chunk=16))
    yield made
    made.close()


def request(engine: OnnxEngine, prompt: str, max_tokens: int, *, long: bool = False) -> GenerationRequest:
    tokens = engine.chat_tokens(engine.render_chat([{"role": "user", "content": prompt}]))
    sampling = SamplingParams(temperature=0, logit_bias={EOS: float("-inf")} if long else {})
    return GenerationRequest(prompt=tokens, sampling=sampling, max_tokens=max_tokens)


async def run(engine: OnnxEngine, req: GenerationRequest, log: list[str] | None = None, name: str = "",
              cancel_after: int = 0, started: asyncio.Event | None = None) -> Out:
    out = Out()
    stream = engine.generate(req)
    async for event in stream:
        out.tokens += event.token_ids
        out.text += event.text
        out.finish = event.finish_reason
        if log is not None:
            log.append(name if event.finish_reason is None else f"{name} end")
        if started is not None and len(out.tokens) == 4:
            started.set()
        if cancel_after and len(out.tokens) >= cancel_after:
            stream.cancel()
            break
    return out


def pause_after_step(monkeypatch: pytest.MonkeyPatch, engine: OnnxEngine, step: int,
                     until: Callable[[], bool]) -> None:
    """The scheduler thread stops after its ``step``-th decode step from now, once that turn's
    events are handed to the event loop (the outbox's flush), until ``until()``."""
    scheduler = engine.scheduler
    decode, flush, count = scheduler._decode, scheduler.outbox.flush, [0]

    def counted() -> None:
        decode()
        count[0] += 1

    def gated() -> None:
        flush()
        if count[0] == step:
            count[0] += 1  # once
            wait_for(until)

    monkeypatch.setattr(scheduler, "_decode", counted)
    monkeypatch.setattr(scheduler.outbox, "flush", gated)


def admit_together(monkeypatch: pytest.MonkeyPatch, engine: OnnxEngine, jobs: int) -> None:
    """The scheduler's next admission waits until ``jobs`` requests are queued: they start together."""
    scheduler = engine.scheduler
    real, armed = scheduler._admit, [True]

    def gated() -> None:
        if armed[0] and scheduler.queue.depth:
            wait_for(lambda: scheduler.queue.depth >= jobs)
            armed[0] = False
        real()

    monkeypatch.setattr(scheduler, "_admit", gated)


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not condition():
        assert time.monotonic() < deadline, "the test's event never came"
        time.sleep(0.002)


async def test_a_late_request_joins_the_running_batch(engine: OnnxEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine.scheduler.prefill_chunk = 16  # the late prompt is read in chunks between the first one's steps
    first, late = request(engine, PROMPTS[0], 48, long=True), request(engine, PROMPTS[3], 8, long=True)
    alone_first, alone_late = await run(engine, first), await run(engine, late)
    before = engine.stats()
    log: list[str] = []
    started = asyncio.Event()
    pause_after_step(monkeypatch, engine, 3, lambda: engine.scheduler.queue.depth > 0)
    task = asyncio.create_task(run(engine, first, log, "first", started=started))
    await started.wait()  # the first request is decoding (its scheduler waits after step 3)
    joined = await run(engine, late, log, "late")
    together = await task
    after = engine.stats()
    # the late request started and ended while the first one ran ...
    assert log.index("late") < log.index("late end") < log.index("first end")
    # ... inside its decode steps: the first took 47 steps (its first token comes from the prefill),
    # and the late one's 7 steps were among them, not after them
    assert after["decode_steps_total"] - before["decode_steps_total"] == 47
    assert after["joined_running_total"] - before["joined_running_total"] == 1 and after["largest_batch"] >= 2
    assert len(late.prompt) > 16  # read in more than one chunk
    assert (together.tokens, joined.tokens) == (alone_first.tokens, alone_late.tokens)
    assert (together.finish, joined.finish) == (FinishReason.LENGTH, FinishReason.LENGTH)
    assert engine.stats()["running"] == 0


async def test_a_row_leaving_changes_no_other_answer(engine: OnnxEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four requests start together; the first is cancelled after step 8 (the last row moves into
    its place, from then on three rows); the others end one by one, as they do without it."""
    engine.scheduler.prefill_chunk = 256  # every prompt read in one turn: they join together
    budgets = [40, 12, 24, 32]
    reqs = [request(engine, p, n, long=True) for p, n in zip(PROMPTS, budgets, strict=True)]
    admit_together(monkeypatch, engine, 3)
    without = await asyncio.gather(*(run(engine, r) for r in reqs[1:]))
    running = engine.scheduler.running  # the first one gone (four rows until step 11), or on its way out
    cancelled = lambda: len(running) < 4 or any(r.job is not None and r.job.cancelled for r in running)  # noqa: E731
    admit_together(monkeypatch, engine, 4)
    pause_after_step(monkeypatch, engine, 8, cancelled)
    outs = await asyncio.gather(*(run(engine, r, cancel_after=6 if i == 0 else 0) for i, r in enumerate(reqs)))
    assert len(outs[0].tokens) == 6 and outs[0].finish is None
    for i in range(1, 4):
        assert outs[i].tokens == without[i - 1].tokens and len(outs[i].tokens) == budgets[i], PROMPTS[i]
    slots = engine.slot_states()
    assert not any(s["busy"] for s in slots) and all(s["batch_row"] == -1 for s in slots)


async def test_seeded_sampling_reproduces_in_a_batch(engine: OnnxEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    engine.scheduler.prefill_chunk = 256
    sampled = GenerationRequest(prompt=request(engine, PROMPTS[3], 1).prompt, max_tokens=20,
                                sampling=SamplingParams(temperature=0.8, top_p=0.9, seed=7))
    outs = []
    for _ in range(2):
        admit_together(monkeypatch, engine, 2)
        outs.append(await asyncio.gather(run(engine, sampled), run(engine, request(engine, PROMPTS[0], 30, long=True))))
    assert outs[0][0].tokens == outs[1][0].tokens and len(outs[0][0].tokens) == 20
    assert outs[0][1].tokens == outs[1][1].tokens
