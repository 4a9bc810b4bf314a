"""Bad input gets an OpenAI-shaped 4xx, never reaches the engine, and disturbs no one."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.conftest import MODEL
from tests.helpers import ServerProcess

GOOD = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}


def _post(server: ServerProcess, body: object | None = None, raw: bytes | None = None) -> httpx.Response:
    if raw is not None:
        return httpx.post(f"{server.base_url}/chat/completions", content=raw,
                          headers={"content-type": "application/json"}, timeout=30)
    return httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=30)


def _error(resp: httpx.Response, status: int) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert {"message", "type", "param", "code"} <= set(err)
    assert isinstance(err["message"], str) and err["message"]
    return err  # type: ignore[no-any-return]


BAD_CASES = [
    ({**GOOD, "model": "nope"}, 404, "model_not_found", "model"),
    ({"model": MODEL}, 400, None, "messages"),
    ({**GOOD, "max_tokens": -3}, 400, None, "max_tokens"),
    ({**GOOD, "max_tokens": 2.5}, 400, None, "max_tokens"),
    ({**GOOD, "max_tokens": "ten"}, 400, None, "max_tokens"),
    ({**GOOD, "temperature": 2.5}, 400, None, "temperature"),
    ({**GOOD, "temperature": -0.1}, 400, None, "temperature"),
    ({**GOOD, "messages": []}, 400, None, "messages"),
    ({**GOOD, "messages": [{"role": "wizard", "content": "x"}]}, 400, None, "messages.0.role"),
    ({**GOOD, "max_tokens": 5000}, 400, "context_length_exceeded", "messages"),
]


@pytest.mark.parametrize(("body", "status", "code", "param"), BAD_CASES)
def test_bad_request_shapes(server: ServerProcess, body: dict[str, object], status: int, code: str | None,
                            param: str) -> None:
    err = _error(_post(server, body), status)
    assert err["param"] == param
    if code:
        assert err["code"] == code
    assert param.split(".")[0] in str(err["message"])


def test_malformed_json(server: ServerProcess) -> None:
    err = _error(_post(server, raw=b'{"model": "x", "messages": [}'), 400)
    assert "JSON" in str(err["message"])


def test_prompt_over_context(server: ServerProcess) -> None:
    long = "word " * 3000
    err = _error(_post(server, {**GOOD, "messages": [{"role": "user", "content": long}]}), 400)
    assert err["code"] == "context_length_exceeded"


def test_unknown_route_is_openai_shaped(server: ServerProcess) -> None:
    _error(httpx.get(f"{server.base_url}/nothing-here"), 404)


def test_sdk_raises_typed_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nope", messages=GOOD["messages"])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=GOOD["messages"], temperature=3)
    assert bad.value.param == "temperature"


async def test_bad_input_does_not_disturb_a_running_stream(server: ServerProcess, aclient: openai.AsyncOpenAI,
                                                           client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Describe a forest in detail."}]
    reference = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=60)
    stream = await aclient.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=60,
                                                   stream=True, stream_options={"include_usage": True})
    parts: list[str] = []
    usage = None
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        async for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
            if len(parts) == 5:  # mid-stream: fire every bad request at once
                bad = [http.post("/chat/completions", json=body) for body, *_ in BAD_CASES]
                bad.append(http.post("/chat/completions", content=b"{not json",
                                     headers={"content-type": "application/json"}))
                answers = await asyncio.gather(*bad)
                assert all(400 <= a.status_code < 500 for a in answers)
    assert "".join(parts) == reference.choices[0].message.content
    assert usage is not None and usage.completion_tokens == reference.usage.completion_tokens
