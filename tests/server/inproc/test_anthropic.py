"""The Anthropic Messages door in process (FakeEngine): the Message object, the event stream,
tool_use blocks, stop sequences, count_tokens, error shapes, x-api-key, keys, limits, metrics
and the audit log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.inprocess import MODEL, Engines, app_client, make_key, settings

pytestmark = pytest.mark.asyncio
BODY: dict[str, Any] = {"model": MODEL, "max_tokens": 256, "messages": [{"role": "user", "content": "hi"}]}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"name": "get_weather", "description": "Weather in a city", "input_schema": SCHEMA}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def events(text: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each SSE event; the name must match the data's type."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        data = json.loads(lines["data"])
        assert data["type"] == lines["event"]
        out.append((lines["event"], data))
    return out


async def test_message_object(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/messages", json={**BODY, "system": "Be brief.", "temperature": 0.3,
                                                    "top_p": 0.9, "top_k": 5, "metadata": {"user_id": "u1"},
                                                    "thinking": {"type": "disabled"}},
                              headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["id"].startswith("msg_") and data["type"] == "message" and data["role"] == "assistant"
    assert data["model"] == MODEL and data["content"] == [{"type": "text", "text": "Hello from the fake engine."}]
    assert data["stop_reason"] == "end_turn" and data["stop_sequence"] is None
    usage = data["usage"]
    request = engines[MODEL].requests[-1]
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] == len(request.prompt)
    assert usage["output_tokens"] == len("Hello from the fake engine.") + 1  # the end token counts
    assert request.sampling.temperature == pytest.approx(0.3) and request.sampling.top_k == 5
    assert request.sampling.top_p == pytest.approx(0.9) and request.max_tokens == 256
    assert "Be brief." in engines[MODEL].detokenize(request.prompt)


async def test_event_order(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/messages", json={**BODY, "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = events(r.text)
    names = [name for name, _ in got]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    start = got[0][1]["message"]
    assert start["id"].startswith("msg_") and start["content"] == [] and start["stop_reason"] is None
    text = "".join(d["delta"]["text"] for n, d in got if n == "content_block_delta")
    assert text == "Hello from the fake engine."
    assert all(d["index"] == 0 for n, d in got if n.startswith("content_block"))
    delta = got[-2][1]
    assert delta["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert delta["usage"]["output_tokens"] == len(text) + 1  # the end token counts


async def test_tool_use_blocks(home: Path, engines: Engines) -> None:
    engines.reply = CALL
    async with app_client(settings(home)) as client:
        body = {**BODY, "tools": TOOLS, "tool_choice": {"type": "any"}}
        r = await client.post("/v1/messages", json=body)
        streamed = await client.post("/v1/messages", json={**body, "stream": True})
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["stop_reason"] == "tool_use" and len(data["content"]) == 1
    block = data["content"][0]
    assert block["type"] == "tool_use" and block["id"].startswith("toolu_")
    assert block["name"] == "get_weather" and block["input"] == {"city": "Paris"}
    assert "get_weather" in (engines[MODEL].requests[-1].sampling.grammar or "")
    got = events(streamed.text)
    start = next(d for n, d in got if n == "content_block_start")
    assert start["content_block"]["type"] == "tool_use" and start["content_block"]["input"] == {}
    partial = "".join(d["delta"]["partial_json"] for n, d in got if n == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert got[-2][1]["delta"]["stop_reason"] == "tool_use"


async def test_tool_choice_maps(home: Path, engines: Engines) -> None:
    engines.reply = CALL
    async with app_client(settings(home)) as client:
        named = {"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True}
        assert (await client.post("/v1/messages", json={**BODY, "tools": TOOLS, "tool_choice": named})).json()[
            "stop_reason"] == "tool_use"
        engines[MODEL].reply = "Plain words."
        r = await client.post("/v1/messages", json={**BODY, "tools": TOOLS, "tool_choice": {"type": "none"}})
        assert r.json()["stop_reason"] == "end_turn" and engines[MODEL].requests[-1].sampling.grammar is None
        r = await client.post("/v1/messages", json={**BODY, "tools": TOOLS,
                                                    "tool_choice": {"type": "tool", "name": "nope"}})
        assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


async def test_tool_round_trip_reaches_the_prompt(home: Path, engines: Engines) -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Let me look."},
                                          {"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                      "content": [{"type": "text", "text": "18 C and sunny"}]}]},
    ]
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/messages", json={**BODY, "messages": messages, "tools": TOOLS})
    assert r.status_code == 200, r.text
    prompt = engines[MODEL].detokenize(engines[MODEL].requests[-1].prompt)
    assert "18 C and sunny" in prompt and '"city": "Paris"' in prompt and "Weather in Paris?" in prompt


async def test_stop_sequence_is_reported(home: Path, engines: Engines) -> None:
    engines.reply = "one two STOP three"
    body = {**BODY, "stop_sequences": ["XYZ", "STOP"]}
    async with app_client(settings(home)) as client:
        data = (await client.post("/v1/messages", json=body)).json()
        got = events((await client.post("/v1/messages", json={**body, "stream": True})).text)
        engines[MODEL].reply = "no stop here"
        plain = (await client.post("/v1/messages", json=body)).json()
        short = (await client.post("/v1/messages", json={**body, "max_tokens": 3})).json()
    assert data["content"][0]["text"] == "one two " and data["stop_reason"] == "stop_sequence"
    assert data["stop_sequence"] == "STOP"
    assert got[-2][1]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}
    assert plain["stop_reason"] == "end_turn" and plain["stop_sequence"] is None
    assert short["stop_reason"] == "max_tokens" and short["content"][0]["text"] == "no "


async def test_count_tokens_matches_the_prompt(home: Path, engines: Engines) -> None:
    body = {"model": MODEL, "system": "Be brief.", "messages": BODY["messages"]}
    async with app_client(settings(home)) as client:
        counted = await client.post("/v1/messages/count_tokens", json=body)
        with_tools = await client.post("/v1/messages/count_tokens", json={**body, "tools": TOOLS})
        await client.post("/v1/messages", json={**body, "max_tokens": 8})
    assert counted.status_code == 200 and set(counted.json()) == {"input_tokens"}
    assert counted.json()["input_tokens"] == len(engines[MODEL].requests[-1].prompt)
    assert len(engines[MODEL].requests) == 1  # counting generates nothing
    assert with_tools.json()["input_tokens"] > counted.json()["input_tokens"]


@pytest.mark.parametrize(("body", "param"), [
    ({k: v for k, v in BODY.items() if k != "max_tokens"}, "max_tokens"),
    ({**BODY, "max_tokens": 0}, "max_tokens"),
    ({**BODY, "temperature": 1.5}, "temperature"),
    ({**BODY, "messages": []}, "messages"),
    ({**BODY, "messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
    ({**BODY, "messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
     "messages.0.content.0.type"),
    ({**BODY, "messages": [{"role": "user", "content": [{"type": "text"}]}]}, "messages.0.content"),
    ({**BODY, "tools": [{"name": "bad name!", "input_schema": {}}]}, "tools.0.name"),
    ({**BODY, "tools": [{"name": "t", "input_schema": {"type": "no-such-type"}}]}, "tools.0.input_schema"),
    ({**BODY, "tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
    ({**BODY, "thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
])
async def test_bad_input_is_400_naming_the_field(body: dict[str, Any], param: str, home: Path,
                                                 engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/messages", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
    assert param in r.json()["error"]["message"], r.json()
    assert not any(e.requests for e in engines.opened.values())  # nothing reached the engine


async def test_error_types_per_status(home: Path, engines: Engines) -> None:
    config = settings(home)
    key = make_key(config, rpm=2)
    async with app_client(config) as client:
        assert (await client.post("/v1/messages", json=BODY)).status_code == 401  # a key exists now
        r = await client.post("/v1/messages", json=BODY, headers={"x-api-key": "slm_nope"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        auth = {"x-api-key": key}
        r = await client.post("/v1/messages", json={**BODY, "model": "no-such-model"}, headers=auth)
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
        engines[MODEL].max_queue = 0
        r = await client.post("/v1/messages", json=BODY, headers=auth)
        assert r.status_code == 529 and r.json()["error"]["type"] == "overloaded_error"
        assert "retry-after" in r.headers
        r = await client.post("/v1/messages", json=BODY, headers=auth)
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
        r = await client.post("/v1/messages/nope", json=BODY, headers={"x-api-key": key})
        assert r.json()["type"] == "error"


async def test_scope_is_permission_error(home: Path, engines: Engines) -> None:
    config = settings(home)
    key = make_key(config, models=["some-other-model"])
    async with app_client(config) as client:
        for path in ("/v1/messages", "/v1/messages/count_tokens"):
            r = await client.post(path, json=BODY, headers={"x-api-key": key})
            assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    assert not any(e.requests for e in engines.opened.values())


async def test_invalid_output_is_api_error_and_an_error_event(home: Path, engines: Engines) -> None:
    engines.reply = '<tool_call>\n{"name": "get_weather", "arguments": {"city": 7}}\n</tool_call>'
    body = {**BODY, "tools": TOOLS, "tool_choice": {"type": "any"}}
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/messages", json=body)
        streamed = await client.post("/v1/messages", json={**body, "stream": True})
    assert r.status_code == 500 and r.json()["error"]["type"] == "api_error"
    got = events(streamed.text)
    assert got[0][0] == "message_start" and got[-1][0] == "error"
    assert got[-1][1]["error"]["type"] == "api_error" and "message_stop" not in [n for n, _ in got]


async def test_x_api_key_works_on_every_route(home: Path, engines: Engines) -> None:
    config = settings(home)
    key = make_key(config)
    async with app_client(config) as client:
        for headers in ({"x-api-key": key}, {"Authorization": f"Bearer {key}"}):
            assert (await client.post("/v1/messages", json=BODY, headers=headers)).status_code == 200
            assert (await client.get("/v1/models", headers=headers)).status_code == 200
            chat = {"model": MODEL, "messages": BODY["messages"], "stream": False}
            assert (await client.post("/api/chat", json=chat, headers=headers)).status_code == 200
        r = await client.get("/v1/models", headers={"x-api-key": "wrong"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"  # OpenAI's shape there


async def test_metrics_and_audit_apply(home: Path, engines: Engines) -> None:
    audit = home / "audit.jsonl"
    config = settings(home, security__audit_log=audit)
    key = make_key(config)
    async with app_client(config, key) as client:
        assert (await client.post("/v1/messages", json=BODY)).status_code == 200
        assert (await client.post("/v1/messages", json={**BODY, "stream": True})).status_code == 200
        assert (await client.post("/v1/messages", json={**BODY, "max_tokens": 0})).status_code == 400
        metrics = (await client.get("/metrics")).text
    assert f'slm_requests_total{{finish_reason="stop",model="{MODEL}"}} 2.0' in metrics
    assert 'slm_request_errors_total{code="invalid_request"} 1.0' in metrics
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    messages = [line for line in lines if line["route"] == "POST /v1/messages"]
    assert [line["status"] for line in messages] == [200, 200, 400]
    assert messages[0]["key"] == "test" and messages[0]["model"] == MODEL and messages[0]["generated_tokens"] > 0


async def test_final_assistant_turn_is_continued(home: Path, engines: Engines) -> None:
    engines.reply = " 42."
    messages = [{"role": "user", "content": "What is the answer?"}, {"role": "assistant", "content": "It is"}]
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/messages", json={**BODY, "messages": messages})
        counted = await client.post("/v1/messages/count_tokens", json={"model": MODEL, "messages": messages})
    assert r.status_code == 200 and r.json()["content"] == [{"type": "text", "text": " 42."}]
    request = engines[MODEL].requests[-1]
    prompt = engines[MODEL].detokenize(request.prompt)
    assert prompt.endswith("assistant\nIt is") and prompt.count("It is") == 1
    assert counted.json()["input_tokens"] == len(request.prompt)
