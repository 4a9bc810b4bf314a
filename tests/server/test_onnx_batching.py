"""Continuous batching in the ONNX engine over HTTP: concurrent requests decode in one batch (one
forward pass per step), give what each would give in other company, leave the batch one by one, a
late request joins the running batch, and admission is the llama.cpp engine's (429 when the queue
is full). Nothing asserts on time (see tests/engine/test_onnx_continuous.py for step counts)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import ONNX_INT4
from tests.helpers import ServerProcess

pytestmark = pytest.mark.slow
EOS = 2  # <|im_end|>: SmolLM2's end of generation, banned below to get long answers

PROMPTS = [  # different lengths: the batch pads them
    "Name three fruits.",
    "Write two sentences about the sea and why so many people love to live near it.",
    "Hi!",
    "Explain in one sentence what a violin is, who plays it and where.",
]


@pytest.fixture(scope="module")
def batch_server(onnx_home: dict[str, Any]) -> Iterator[ServerProcess]:
    """int4, 4 slots, one request may wait."""
    env = {"SLM_HOME": str(onnx_home["home"])}
    proc = ServerProcess("--model", ONNX_INT4, "--parallel", "4", "--max-queue", "1", "--ctx-size", "1024",
                         "--threads", "2", env=env)
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def solo(onnx_server: ServerProcess) -> openai.OpenAI:
    """The same int4 model on the other ONNX server, asked one request at a time (a batch of one)."""
    return openai.OpenAI(base_url=onnx_server.base_url, api_key="unused", max_retries=0, timeout=120)


def _messages(prompt: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}]


async def _stats(http: httpx.AsyncClient) -> dict[str, Any]:
    resp = await http.get("/slots")
    resp.raise_for_status()
    stats: dict[str, Any] = resp.json()[ONNX_INT4]
    return stats


async def _stream(aclient: openai.AsyncOpenAI, prompt: str, **extra: Any) -> tuple[str, Any, str | None]:
    stream = await aclient.chat.completions.create(model=ONNX_INT4, messages=_messages(prompt), max_tokens=32,
                                                   stream=True, stream_options={"include_usage": True},
                                                   **{"temperature": 0, **extra})
    text, usage, finish = "", None, None
    async for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    return text, usage, finish


SAMPLED = {"temperature": 0.9, "top_p": 0.9, "seed": 42}  # the last request samples, the others are greedy


async def test_four_streams_share_one_batch_and_read_their_own_prompts(batch_server: ServerProcess,
                                                                        solo: openai.OpenAI) -> None:
    aclient = openai.AsyncOpenAI(base_url=batch_server.base_url, api_key="unused", max_retries=0, timeout=120)
    extras: list[dict[str, Any]] = [{}, {}, {}, SAMPLED]
    async with httpx.AsyncClient(base_url=batch_server.url, timeout=30) as http:
        # the reference: the same requests in two batches of two (other neighbours, other padding)
        pairs = [await asyncio.gather(*(_stream(aclient, PROMPTS[i], **extras[i]) for i in group))
                 for group in ((0, 1), (2, 3))]
        before = await _stats(http)
        results = await asyncio.gather(*(_stream(aclient, p, **x) for p, x in zip(PROMPTS, extras, strict=True)))
        after = await _stats(http)
    assert after["batched_sequences_total"] - before["batched_sequences_total"] == 4
    assert after["largest_batch"] == 4 and after["running"] == 0  # the four decoded together
    # Batching continuously, the four rows join the running batch at different steps, so each
    # step's row count differs from the reference run's; onnxruntime's int4 kernels round
    # differently per row count, so later greedy tokens may differ at near-ties. What must hold:
    # each row read its own prompt (same token count, same first token as the reference).
    for prompt, ref, (text, usage, finish) in zip(PROMPTS, pairs[0] + pairs[1], results, strict=True):
        assert text and ref[0], prompt
        assert usage.prompt_tokens == ref[1].prompt_tokens, prompt
        assert finish in ("stop", "length") and ref[2] in ("stop", "length")
    for prompt, ref, (text, _, _) in zip(PROMPTS[:3], pairs[0] + pairs[1], results, strict=False):
        assert text.split()[0] == ref[0].split()[0], prompt  # greedy: the same first word
    # Alone (a batch of one), onnxruntime's int4 kernels take another code path for a single row,
    # so later tokens may differ at near-ties; the prompt is read identically: same first token.
    for prompt, (text, _, _) in zip(PROMPTS[:3], results, strict=False):
        first = solo.chat.completions.create(model=ONNX_INT4, messages=_messages(prompt), temperature=0, max_tokens=1)
        assert text.startswith(first.choices[0].message.content), prompt


LONG = {"model": ONNX_INT4, "temperature": 0, "max_tokens": 200, "logit_bias": {str(EOS): -100}}


async def _complete(http: httpx.AsyncClient, prompt: str, **body: Any) -> dict[str, Any]:
    resp = await http.post("/v1/completions", json={**LONG, "prompt": prompt, **body})
    resp.raise_for_status()
    out: dict[str, Any] = resp.json()
    return out


async def _wait_for(http: httpx.AsyncClient, running: int) -> dict[str, Any]:
    for _ in range(600):
        stats = await _stats(http)
        if stats["running"] == running:
            return stats
        await asyncio.sleep(0.05)
    raise AssertionError(f"running never reached {running}: {stats}")


async def test_cancelled_sequence_leaves_the_batch_and_frees_its_slot(batch_server: ServerProcess) -> None:
    async with httpx.AsyncClient(base_url=batch_server.url, timeout=120) as http:
        before = await _stats(http)
        others = [asyncio.create_task(_complete(http, p)) for p in PROMPTS[1:]]
        async with http.stream("POST", "/v1/completions", json={**LONG, "prompt": PROMPTS[0], "stream": True}) as resp:
            chunks = 0
            async for line in resp.aiter_lines():
                chunks += line.startswith("data: {")
                if chunks >= 3:
                    break  # the client goes away mid-batch
        stats = await _wait_for(http, running=3)
        assert not any(t.done() for t in others)  # the three others run on in their batch
        assert stats["largest_batch"] == 4
        # the freed slot takes a new request at once, into the running batch
        joined = stats["joined_running_total"]
        late = await _complete(http, "Say hello.", max_tokens=8)
        assert late["usage"]["completion_tokens"] == 8
        assert not all(t.done() for t in others)
        assert (await _stats(http))["joined_running_total"] == joined + 1
        results = await asyncio.gather(*others)
        after = await _stats(http)
    for result in results:
        assert result["choices"][0]["finish_reason"] == "length" and result["usage"]["completion_tokens"] == 200
    assert after["batched_sequences_total"] - before["batched_sequences_total"] == 5 and after["running"] == 0


async def test_full_queue_gives_429(batch_server: ServerProcess) -> None:
    aclient = openai.AsyncOpenAI(base_url=batch_server.base_url, api_key="unused", max_retries=0, timeout=120)

    async def one() -> str:
        try:
            await aclient.completions.create(model=ONNX_INT4, prompt="Once upon a time", max_tokens=24, temperature=0)
        except openai.RateLimitError:
            return "429"
        return "ok"

    outcomes = await asyncio.gather(*(one() for _ in range(7)))  # 4 slots + 1 waiting
    assert outcomes.count("429") >= 1 and outcomes.count("ok") >= 5
