"""``echo`` with ``logprobs`` on /v1/completions scores the prompt; ``max_tokens: 0`` with echo
generates nothing (in process: what the use-case layer asks of the engine, and the wire shape)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.inprocess import MODEL, Engines, app_client, settings

pytestmark = pytest.mark.asyncio
BODY = {"model": MODEL, "prompt": "xy", "echo": True, "logprobs": 1, "max_tokens": 0}


def _sse(text: str) -> list[Any]:
    return [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: ") and line[6:] != "[DONE]"]


async def test_max_tokens_zero_with_echo_and_logprobs_scores_the_prompt(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/completions", json=BODY)
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        assert choice["text"] == "xy" and choice["finish_reason"] == "length"
        assert choice["logprobs"] == {"tokens": ["<s>", "x", "y"], "token_logprobs": [None, -0.25, -0.25],
                                      "top_logprobs": [None, {"x": -0.25}, {"y": -0.25}],  # 0: the token itself
                                      "text_offset": [0, 3, 4]}
        assert r.json()["usage"] == {"prompt_tokens": 3, "completion_tokens": 0, "total_tokens": 3,
                                     "prompt_tokens_details": {"cached_tokens": 0}}
        frames = _sse((await client.post("/v1/completions", json={**BODY, "stream": True})).text)
    request = engines[MODEL].requests[0]
    assert request.prompt_logprobs == 1 and request.max_tokens == 0 and request.logprobs == 1
    texts = "".join(c["text"] for f in frames for c in f["choices"])
    assert texts == "xy"  # the echo goes out once, with the prompt's logprobs
    scored = [c["logprobs"] for f in frames for c in f["choices"] if c["logprobs"]]
    assert scored == [choice["logprobs"]]


async def test_only_echo_with_logprobs_scores(home: Path, engines: Engines) -> None:
    """Logprobs without echo, or echo without logprobs, never ask the engine to score."""
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/completions", json={**BODY, "echo": False, "max_tokens": 2})
        assert r.status_code == 200 and r.json()["choices"][0]["logprobs"]["token_logprobs"] == [-0.5, -0.5]
        r = await client.post("/v1/completions", json={**BODY, "logprobs": None, "max_tokens": 2})
        assert r.status_code == 200 and r.json()["choices"][0]["text"] == "xyHe"
    assert [q.prompt_logprobs for q in engines[MODEL].requests] == [None, None]


async def test_max_tokens_zero_with_echo_alone_needs_no_engine(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/completions", json={**BODY, "logprobs": None, "prompt": ["ab", "c"]})
        assert r.status_code == 200, r.text
        assert [c["text"] for c in r.json()["choices"]] == ["ab", "c"]
        assert {c["finish_reason"] for c in r.json()["choices"]} == {"length"}
        assert r.json()["usage"]["completion_tokens"] == 0 and r.json()["usage"]["prompt_tokens"] == 5
    assert engines[MODEL].requests == []


@pytest.mark.parametrize("body", [
    {**BODY, "echo": False},
    {**BODY, "echo": False, "logprobs": None},
    {"model": MODEL, "prompt": "xy", "max_tokens": 0},
])
async def test_max_tokens_zero_without_echo_is_refused(body: dict[str, Any], home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/completions", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "max_tokens" and "echo" in r.json()["error"]["message"]
        r = await client.post("/v1/chat/completions", json={"model": MODEL, "max_tokens": 0,
                                                             "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400
    assert not any(e.requests for e in engines.opened.values())


async def test_remote_tokenizer_routes(home: Path, engines: Engines) -> None:
    """What lm-eval's remote tokenizer (local-completions' default when the server has it) calls:
    vLLM's GET /tokenizer_info, /tokenize with ``add_special_tokens``, /detokenize's ``prompt``."""
    async with app_client(settings(home)) as client:
        info = (await client.get("/tokenizer_info")).json()
        assert info["model"] == MODEL and "eos_token" in info and info["model_max_length"] == 2048
        plain = (await client.post("/tokenize", json={"prompt": "ab", "add_special_tokens": False})).json()
        assert plain["tokens"] == [ord("a") + 3, ord("b") + 3]
        assert (await client.post("/tokenize", json={"prompt": "ab"})).json()["tokens"][0] == 0  # BOS by default
        back = (await client.post("/detokenize", json={"tokens": plain["tokens"]})).json()
        assert back["prompt"] == back["content"] == "ab"
