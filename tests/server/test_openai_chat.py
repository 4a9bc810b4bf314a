"""Chat completions through the real openai SDK against the real server and model."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import MODEL
from tests.openapi import validate

HELLO = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def test_sync_chat_answers_and_validates(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=MODEL, messages=HELLO, temperature=0, max_tokens=16)
    validate("CreateChatCompletionResponse", resp.model_dump(exclude_unset=True))
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert "paris" in choice.message.content.lower()
    assert choice.finish_reason in ("stop", "length")
    assert resp.model == MODEL
    assert resp.usage.prompt_tokens > 5
    assert 0 < resp.usage.completion_tokens <= 16
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens


def test_max_tokens_gives_length(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        temperature=0, max_tokens=7)
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens == 7


def test_max_completion_tokens_is_honoured(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
        temperature=0, max_completion_tokens=5)
    assert resp.usage.completion_tokens == 5


async def test_async_chat(aclient: openai.AsyncOpenAI) -> None:
    resp = await aclient.chat.completions.create(model=MODEL, messages=HELLO, temperature=0, max_tokens=16)
    assert "paris" in resp.choices[0].message.content.lower()


def test_streaming_chat_chunks_validate(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=HELLO, temperature=0, max_tokens=16,
                                            stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [finishes[0]] and finishes[0] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    reference = client.chat.completions.create(model=MODEL, messages=HELLO, temperature=0, max_tokens=16)
    assert text == reference.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == reference.usage.completion_tokens


async def test_async_streaming(aclient: openai.AsyncOpenAI) -> None:
    stream = await aclient.chat.completions.create(model=MODEL, messages=HELLO, temperature=0, max_tokens=8,
                                                   stream=True)
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert "".join(parts).strip()


def test_system_and_multi_turn_messages(client: openai.OpenAI) -> None:
    messages = [
        {"role": "system", "content": "You are a terse assistant."},
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [{"type": "text", "text": "Name a color."}]},
    ]
    resp = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=10)
    assert resp.choices[0].message.content.strip()


def test_stop_string_never_appears(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Count from 1 to 20, separated by commas."}]
    full = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=60)
    text = full.choices[0].message.content
    assert len(text) > 12
    # a stop string that starts inside one token and ends inside another
    stop = text[len(text) // 2 - 2 : len(text) // 2 + 3]
    cut = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=60, stop=[stop])
    assert stop not in cut.choices[0].message.content
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=60,
                                              stop=stop, stream=True)
    joined = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert joined == text[: text.index(stop)]


def test_models_list_validates(client: openai.OpenAI) -> None:
    models = client.models.list()
    validate("ListModelsResponse", models.model_dump(exclude_unset=True))
    ids = [m.id for m in models.data]
    assert ids[0] == MODEL and "all-minilm-l6-v2" in ids  # the default, then every other servable model
    assert client.models.retrieve(MODEL).id == MODEL


def test_unknown_model_in_retrieve(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")
