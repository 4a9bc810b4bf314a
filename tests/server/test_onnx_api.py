"""The ONNX Runtime GenAI engine behind the same server: the OpenAI conformance tests of the
llama.cpp engine, run unchanged against the converted int8 model, plus concurrency, admission,
cancellation and the parameters the engine refuses."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import MODEL
from tests.helpers import ServerProcess

# The conformance suite, collected again here with `client`/`aclient` bound to the ONNX server.
from tests.server.test_openai_chat import (  # noqa: F401
    test_async_chat,
    test_async_streaming,
    test_max_completion_tokens_is_honoured,
    test_max_tokens_gives_length,
    test_stop_string_never_appears,
    test_streaming_chat_chunks_validate,
    test_sync_chat_answers_and_validates,
    test_system_and_multi_turn_messages,
    test_unknown_model_in_retrieve,
)
from tests.server.test_openai_completions import (  # noqa: F401
    test_completion_prompt_list_and_token_ids,
    test_completion_stream_matches_non_stream,
    test_completion_validates,
    test_echo_prepends_prompt,
)

pytestmark = pytest.mark.slow
INT4 = f"{MODEL}:onnx-int4"


@pytest.fixture(scope="module")
def onnx_server(onnx_home: dict[str, Any]) -> Iterator[ServerProcess]:
    """int8 as `smollm2-135m-instruct` and int4 beside it: 4 slots, one request may wait."""
    proc = ServerProcess("--model", MODEL, "--model", INT4, "--parallel", "4", "--max-queue", "1",
                         "--ctx-size", "1024", "--threads", "2", env={"SLM_HOME": str(onnx_home["home"])})
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def client(onnx_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=onnx_server.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def aclient(onnx_server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=onnx_server.base_url, api_key="unused", max_retries=0, timeout=120)


def test_models_list_has_both_onnx_models(client: openai.OpenAI) -> None:
    assert {MODEL, INT4} <= {m.id for m in client.models.list().data}


def test_engine_is_onnx(onnx_server: ServerProcess) -> None:
    metrics = httpx.get(f"{onnx_server.url}/metrics", timeout=10).text
    assert f'slm_requests_running{{model="{MODEL}"}}' in metrics


HELLO = [{"role": "user", "content": "Name three fruits."}]


async def _stream(aclient: openai.AsyncOpenAI, model: str, max_tokens: int = 24) -> tuple[str, str | None, int]:
    stream = await aclient.chat.completions.create(model=model, messages=HELLO, temperature=0, max_tokens=max_tokens,
                                                   stream=True, stream_options={"include_usage": True})
    text, finish, tokens = "", None, 0
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage:
            tokens = chunk.usage.completion_tokens
    return text, finish, tokens


async def test_int4_streams_to_four_concurrent_clients(aclient: openai.AsyncOpenAI, client: openai.OpenAI) -> None:
    reference = client.chat.completions.create(model=INT4, messages=HELLO, temperature=0, max_tokens=24)
    results = await asyncio.gather(*(_stream(aclient, INT4) for _ in range(4)))
    for text, finish, tokens in results:
        assert text == reference.choices[0].message.content  # greedy: every stream gives the same answer
        assert finish in ("stop", "length")
        assert tokens == reference.usage.completion_tokens > 0


async def test_full_queue_gives_429(aclient: openai.AsyncOpenAI) -> None:
    async def one() -> str:
        try:
            await aclient.completions.create(model=INT4, prompt="Once upon a time", max_tokens=48, temperature=0)
        except openai.RateLimitError:
            return "429"
        return "ok"

    outcomes = await asyncio.gather(*(one() for _ in range(7)))  # 4 slots + 1 waiting
    assert outcomes.count("429") >= 1 and outcomes.count("ok") >= 5


@pytest.mark.parametrize(("extra", "param"), [
    ({"logprobs": True}, "logprobs"),
    ({"extra_body": {"min_p": 0.2}}, "min_p"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
])
def test_unsupported_parameters_are_refused_by_name(client: openai.OpenAI, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, **extra)
    assert param in str(info.value.body) and info.value.body["param"] == param


def test_sampling_with_seed_reproduces(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0.9,
                              "top_p": 0.9, "seed": 7}
    first = client.chat.completions.create(**kwargs).choices[0].message.content
    assert first == client.chat.completions.create(**kwargs).choices[0].message.content


def test_cancelled_stream_frees_its_slot(onnx_server: ServerProcess) -> None:
    body = {"model": INT4, "prompt": "Write a very long story.", "max_tokens": 400, "stream": True}
    with httpx.stream("POST", f"{onnx_server.base_url}/completions", json=body, timeout=60) as resp:
        for i, _ in enumerate(resp.iter_lines()):
            if i > 3:
                break
    deadline = time.monotonic() + 30
    running = None
    while time.monotonic() < deadline:
        metrics = httpx.get(f"{onnx_server.url}/metrics", timeout=10).text
        prefix = f'slm_requests_running{{model="{INT4}"'
        running = next(line for line in metrics.splitlines() if line.startswith(prefix))
        if running.endswith(" 0.0"):
            break
        time.sleep(0.2)
    assert running is not None and running.endswith(" 0.0")
