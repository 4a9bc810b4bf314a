"""slmkit.load: chat, completion, streaming (sync and async, batched), tokens, close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import slmkit
from slmkit.errors import ContextLengthExceeded, InvalidRequest, ModelClosed, ModelNotFound

GREEDY = {"temperature": 0.0, "max_tokens": 24}


def test_chat_answers_with_usage(model: slmkit.Model) -> None:
    out = model.chat("What is the capital of France? Answer in one word.", **GREEDY)
    assert "paris" in out.text.lower()
    assert out.finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens > 5 and 0 < out.usage.completion_tokens <= 24
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    assert out.model == model.name == "smollm2-135m-instruct" and model.kind == "chat"
    assert str(out) == out.text


def test_chat_takes_openai_messages_and_repeats_greedily(model: slmkit.Model) -> None:
    messages = [{"role": "system", "content": "You answer briefly."},
                {"role": "user", "content": "Name a primary colour."}]
    first, second = model.chat(messages, **GREEDY), model.chat(messages, **GREEDY)
    assert first.text == second.text and first.text.strip()
    assert second.usage.cached_tokens > 0  # the repeated prompt reused a slot's cache


def test_complete_continues_plain_text(model: slmkit.Model) -> None:
    out = model.complete("1, 2, 3, 4,", max_tokens=6, temperature=0.0)
    assert out.text.strip().startswith("5")
    assert out.finish_reason == "length" and out.usage.completion_tokens == 6


def test_n_choices_and_logprobs(model: slmkit.Model) -> None:
    out = model.chat("Say a random word.", n=3, max_tokens=5, temperature=1.0, seed=7, logprobs=2)
    assert [c.index for c in out.choices] == [0, 1, 2]
    assert all(c.logprobs and all(lp.logprob <= 0 and len(lp.top) == 2 for lp in c.logprobs) for c in out.choices)
    again = model.chat("Say a random word.", n=3, max_tokens=5, temperature=1.0, seed=7)
    assert [c.text for c in again.choices] == [c.text for c in out.choices]


def test_stream_matches_chat(model: slmkit.Model) -> None:
    chunks = list(model.stream("Count from one to five in words.", **GREEDY))
    whole = model.chat("Count from one to five in words.", **GREEDY)
    assert "".join(c.text for c in chunks) == whole.text
    assert chunks[-1].finish_reason == whole.finish_reason and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert all(c.finish_reason is None for c in chunks[:-1])


def test_stream_of_a_prompt(model: slmkit.Model) -> None:
    text = "".join(c.text for c in model.stream(prompt="The alphabet: a, b, c,", max_tokens=6, temperature=0.0))
    assert text == model.complete("The alphabet: a, b, c,", max_tokens=6, temperature=0.0).text


def test_leaving_a_stream_early_frees_its_slot(model: slmkit.Model) -> None:
    stream = model.stream("Write a long story about a dragon.", max_tokens=400, temperature=0.0)
    next(stream)
    assert model.stats()["running"] >= 1
    stream.close()
    assert _eventually_idle(model)


async def test_cancelling_an_astream_mid_read_closes_it_cleanly(model: slmkit.Model) -> None:
    """Ctrl-C in ``slm run`` cancels the reader while a read is in flight on the model's loop:
    the stream must close there once that read ends, not raise 'already running'."""
    for _ in range(5):
        first = asyncio.Event()

        async def consume(first: asyncio.Event) -> None:
            async for _chunk in model.astream("Write a long story about a dragon.", max_tokens=400):
                first.set()

        task = asyncio.create_task(consume(first))
        await asyncio.wait_for(first.wait(), timeout=60)
        await asyncio.sleep(0.01)  # the next read is now waiting on the model's loop
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await asyncio.to_thread(_eventually_idle, model)


def _eventually_idle(model: slmkit.Model) -> bool:
    import time

    for _ in range(500):  # up to ~10 s: a loaded machine may take a step or two to see the close
        if model.stats()["running"] == 0:
            return True
        time.sleep(0.02)
    return False


async def test_two_astreams_are_batched(model: slmkit.Model) -> None:
    prompts = ["List three fruits.", "List three animals."]
    solo = [model.chat(p, max_tokens=32, temperature=0.0).text for p in prompts]
    running: list[float] = []

    async def consume(prompt: str) -> str:
        text = ""
        async for chunk in model.astream(prompt, max_tokens=32, temperature=0.0):
            running.append(model.stats()["running"])
            text += chunk.text
        return text

    together = await asyncio.gather(*(consume(p) for p in prompts))
    assert max(running) == 2  # both sequences were in the engine's batch at once
    assert list(together) == solo  # greedy answers do not depend on batching


async def test_achat_and_acomplete(model: slmkit.Model) -> None:
    chat, completion = await asyncio.gather(model.achat("Hi!", max_tokens=8, temperature=0.0),
                                            model.acomplete("Once upon a", max_tokens=4, temperature=0.0))
    assert chat.text and completion.usage.completion_tokens == 4


def test_tokenize_round_trip(model: slmkit.Model) -> None:
    tokens = model.tokenize("Hello, world!", add_special=False)
    assert tokens and model.detokenize(tokens) == "Hello, world!"
    with pytest.raises(InvalidRequest):
        model.detokenize([10**9])


def test_tool_call(model: slmkit.Model) -> None:
    weather = {"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    out = model.chat("What is the weather in Paris?", tools=[weather], tool_choice="required", max_tokens=60,
                     temperature=0.0)
    assert out.tool_calls and out.tool_calls[0].name == "get_weather"
    assert isinstance(out.tool_calls[0].arguments["city"], str)


@pytest.mark.parametrize(("options", "param"), [
    ({"temperature": 5.0}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"top_logprobs": 3}, "top_logprobs"),  # not an option of the Python API (logprobs= is)
    ({"logit_bias": {10**7: 1.0}}, "logit_bias"),
    ({"response_format": {"type": "object", "properties": {"a": {"type": "nonsense"}}}},
     "response_format.json_schema.schema"),
    ({"response_format": 42}, "response_format"),
    ({"tools": [{"type": "retrieval"}]}, "tools.0"),
])
def test_bad_options_raise_invalid_request(model: slmkit.Model, options: dict[str, object], param: str) -> None:
    assert _eventually_idle(model)
    with pytest.raises(InvalidRequest) as caught:
        model.chat("hi", **options)  # type: ignore[arg-type]
    assert caught.value.param == param
    assert model.stats()["running"] == model.stats()["waiting"] == 0  # nothing reached the engine


def test_context_overflow_is_a_project_error(model: slmkit.Model) -> None:
    with pytest.raises(ContextLengthExceeded):
        model.chat("word " * 2000, max_tokens=10)
    with pytest.raises(ContextLengthExceeded):
        model.stream("word " * 2000, max_tokens=10)


def test_stream_refuses_what_it_cannot_stream(model: slmkit.Model) -> None:
    with pytest.raises(InvalidRequest, match="n > 1"):
        model.stream("hi", n=2)
    with pytest.raises(InvalidRequest, match="either messages or prompt"):
        model.stream()
    with pytest.raises(InvalidRequest, match="embedding model"):
        model.embed("hi")


def test_load_errors() -> None:
    with pytest.raises(ModelNotFound):
        slmkit.load("no-such-model-anywhere")
    with pytest.raises(InvalidRequest, match="unknown engine option 'slots'"):
        slmkit.load(slots=4)
    with pytest.raises(InvalidRequest, match="parallel"):
        slmkit.load(parallel=0)


def test_use_after_close_raises_model_closed() -> None:
    small = slmkit.load(parallel=1, ctx_size=256, threads=2)
    assert small.chat("Hi", max_tokens=2).usage.completion_tokens <= 2
    small.close()
    small.close()  # closing twice is fine
    assert small.closed and "closed" in repr(small)
    for call in (lambda: small.chat("Hi"), lambda: small.tokenize("Hi"), lambda: list(small.stream("Hi"))):
        with pytest.raises(ModelClosed, match="is closed"):
            call()


async def test_a_stream_whose_read_unwinds_slowly_is_closed_once_it_has() -> None:
    """The race behind the Ctrl-C test: a cancelled read that awaits on its way out keeps the
    generator running for a while; closing it must wait for that, not fail 'already running'."""
    from slmkit.api.model import _aclose_when_idle

    closed: list[str] = []

    async def chunks() -> AsyncIterator[int]:
        try:
            while True:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    await asyncio.sleep(0.05)  # e.g. an engine that confirms the cancel
                    raise
                yield 1
        finally:
            closed.append("closed")

    stream = chunks()
    read = asyncio.ensure_future(stream.__anext__())
    await asyncio.sleep(0.01)
    read.cancel()
    await _aclose_when_idle(stream)  # a plain stream.aclose() here raises RuntimeError
    assert read.cancelled() and closed == ["closed"]
