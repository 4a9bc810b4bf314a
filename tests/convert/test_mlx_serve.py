"""The MLX engine behind the same server: the q8 conversion answers through the real OpenAI and
Ollama SDKs, streamed and not, two requests at once in one batch (each as it answers alone), with
the sampling controls it honours and a 400 naming what it cannot do (grammar-constrained output);
the q4 conversion serves beside it. (q8 stays close to the GGUF: top-1 agreement 0.95; q4, a 4-bit
grid quantized twice, does not reliably name a capital, so only q8's answers are checked for it.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.convert.conftest import MLX_Q4, MLX_Q8
from tests.helpers import ServerProcess

pytestmark = pytest.mark.slow
ASK = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def mlx_server(mlx_home: dict[str, Any]) -> Iterator[ServerProcess]:
    proc = ServerProcess("--model", MLX_Q8, "--model", MLX_Q4, "--parallel", "2", "--ctx-size", "512", "--threads", "2",
                         env={"SLM_HOME": str(mlx_home["home"])})
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def client(mlx_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=mlx_server.base_url, api_key="unused", max_retries=0, timeout=300)


def test_openai_chat_streamed_and_not(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=MLX_Q8, messages=ASK, temperature=0, max_tokens=8)
    answer = whole.choices[0].message.content or ""
    assert "paris" in answer.lower() and whole.choices[0].finish_reason in ("stop", "length")
    assert whole.usage is not None and whole.usage.prompt_tokens > 5 and 0 < whole.usage.completion_tokens <= 8
    assert whole.usage.total_tokens == whole.usage.prompt_tokens + whole.usage.completion_tokens
    chunks = list(client.chat.completions.create(model=MLX_Q8, messages=ASK, temperature=0, max_tokens=8, stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_ollama_chat_streamed_and_not(mlx_server: ServerProcess) -> None:
    sdk = ollama.Client(host=mlx_server.url, timeout=300)
    options = {"temperature": 0, "num_predict": 8}
    whole = sdk.chat(model=MLX_Q8, messages=ASK, options=options)
    assert "paris" in whole.message.content.lower() and whole.done and 0 < whole.eval_count <= 8
    parts = list(sdk.chat(model=MLX_Q8, messages=ASK, options=options, stream=True))
    assert "".join(p.message.content for p in parts) == whole.message.content
    assert parts[-1].done and parts[-1].eval_count == whole.eval_count


async def test_two_concurrent_requests_share_one_batch(mlx_server: ServerProcess) -> None:
    aclient = openai.AsyncOpenAI(base_url=mlx_server.base_url, api_key="unused", max_retries=0, timeout=300)

    async def ask(question: str) -> str:
        resp = await aclient.chat.completions.create(model=MLX_Q8, messages=[{"role": "user", "content": question}],
                                                     temperature=0, max_tokens=6)
        return resp.choices[0].message.content or ""

    together = await asyncio.gather(ask("What is the capital of France?"), ask("Name a primary colour."))
    assert "paris" in together[0].lower() and together[1].strip()
    slots = httpx.get(f"{mlx_server.url}/slots", timeout=10).json()[MLX_Q8]
    assert slots["largest_batch"] == 2 and len(slots["slots"]) == 2 and slots["running"] == 0
    assert await ask("Name a primary colour.") == together[1]  # alone, as in the batch
    await aclient.close()


def test_stop_length_logprobs_and_seed(client: openai.OpenAI) -> None:
    stopped = client.chat.completions.create(model=MLX_Q8, messages=ASK, temperature=0, max_tokens=12, stop=["Paris"])
    assert "Paris" not in (stopped.choices[0].message.content or "") and stopped.choices[0].finish_reason == "stop"
    short = client.chat.completions.create(model=MLX_Q8, messages=ASK, temperature=0, max_tokens=2, logprobs=True,
                                           top_logprobs=2)
    assert short.choices[0].finish_reason == "length" and short.usage is not None and short.usage.completion_tokens == 2
    content = short.choices[0].logprobs.content if short.choices[0].logprobs else None
    assert content and len(content) == 2 and all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in content)
    seeded: dict[str, Any] = {"model": MLX_Q8, "messages": ASK, "max_tokens": 6, "temperature": 1.0, "top_p": 0.9,
                              "seed": 5, "extra_body": {"top_k": 20, "min_p": 0.05, "repeat_penalty": 1.1}}
    first = client.chat.completions.create(**seeded).choices[0].message.content
    assert first and first == client.chat.completions.create(**seeded).choices[0].message.content


def test_json_schema_and_tools_are_refused_by_name(client: openai.OpenAI, mlx_server: ServerProcess) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MLX_Q8, messages=ASK, max_tokens=4,
                                       response_format={"type": "json_object"})
    assert info.value.body["param"] == "response_format" and "MLX engine does not support" in str(info.value.body)
    resp = httpx.post(f"{mlx_server.url}/api/chat", json={"model": MLX_Q8, "messages": ASK, "format": "json",
                                                         "stream": False}, timeout=30)
    assert resp.status_code == 400 and "does not support response_format" in resp.json()["error"]
    weather = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MLX_Q8, messages=ASK, max_tokens=4, tools=[weather])  # type: ignore[list-item]
    assert info.value.body["param"] == "tools"


def test_the_q4_conversion_serves_too(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=MLX_Q4, messages=ASK, temperature=0, max_tokens=4)
    assert (resp.choices[0].message.content or "").strip() and resp.usage is not None
    assert 0 < resp.usage.completion_tokens <= 4
