"""Concurrent requests are batched: they all finish, with their own text and usage."""

from __future__ import annotations

import asyncio

import openai

from tests.conftest import MODEL
from tests.helpers import ServerProcess

TOPICS = ["the sea", "a robot", "green tea", "mountains", "a violin", "the moon", "bread", "winter"]


def _messages(topic: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Write two sentences about {topic}."}]


async def _stream(aclient: openai.AsyncOpenAI, topic: str, max_tokens: int) -> tuple[str, object, str | None]:
    stream = await aclient.chat.completions.create(
        model=MODEL, messages=_messages(topic), temperature=0, max_tokens=max_tokens, stream=True,
        stream_options={"include_usage": True})
    parts, usage, finish = [], None, None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            parts.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
    return "".join(parts), usage, finish


async def test_eight_concurrent_streams_no_cross_talk(aclient: openai.AsyncOpenAI, client: openai.OpenAI) -> None:
    results = await asyncio.gather(*(_stream(aclient, t, 40) for t in TOPICS))
    for topic, (text, usage, finish) in zip(TOPICS, results, strict=True):
        alone = client.chat.completions.create(model=MODEL, messages=_messages(topic), temperature=0, max_tokens=40)
        # the same prompt decoded alone gives the same text: no sequence saw another's tokens
        assert text == alone.choices[0].message.content, topic
        assert usage is not None
        assert usage.prompt_tokens == alone.usage.prompt_tokens
        assert usage.completion_tokens == alone.usage.completion_tokens
        assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
        assert finish == alone.choices[0].finish_reason


async def test_more_requests_than_slots_all_finish(aclient: openai.AsyncOpenAI) -> None:
    results = await asyncio.gather(*(_stream(aclient, t, 12) for t in TOPICS + TOPICS))
    assert all(usage is not None and usage.completion_tokens > 0 for _, usage, _ in results)


def test_temperature_zero_one_slot_is_deterministic(one_slot_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=one_slot_server.base_url, api_key="x", max_retries=0)
    kwargs = {"model": MODEL, "messages": _messages("a lighthouse"), "temperature": 0, "max_tokens": 48}
    first = client.chat.completions.create(**kwargs).choices[0].message.content
    second = client.chat.completions.create(**kwargs).choices[0].message.content
    assert first == second and first


def test_seed_makes_sampling_reproducible(one_slot_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=one_slot_server.base_url, api_key="x", max_retries=0)
    kwargs = {"model": MODEL, "messages": _messages("a lighthouse"), "temperature": 1.0, "max_tokens": 32}
    a = client.chat.completions.create(**kwargs, seed=1234).choices[0].message.content
    b = client.chat.completions.create(**kwargs, seed=1234).choices[0].message.content
    assert a == b
    others = {client.chat.completions.create(**kwargs, seed=s).choices[0].message.content for s in (1, 2, 3)}
    assert len(others | {a}) > 1
