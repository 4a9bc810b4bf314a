"""The OpenAI Responses door in process (FakeEngine): the Response object and its streamed
events (checked against OpenAI's own OpenAPI document), 400s naming the parameter, tools,
structured output and truncation. Stored responses: test_responses_store.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.inprocess import MODEL, Engines, app_client, settings
from tests.openapi import validate

pytestmark = pytest.mark.asyncio
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city", "strict": True,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent", "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent", "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent", "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent", "response.failed": "ResponseFailedEvent",
}


def events(text: str) -> list[dict[str, Any]]:
    """The SSE events, each checked: its ``event:`` line names its type, its schema is OpenAI's."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        event = json.loads(lines["data"])
        assert lines["event"] == event["type"]
        validate(EVENT_SCHEMAS[event["type"]], event)
        out.append(event)
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    return out


async def post(home: Path, body: dict[str, Any], **config: Any) -> Any:
    async with app_client(settings(home, **config)) as client:
        return await client.post("/v1/responses", json={"model": MODEL, **body})


async def test_response_object(home: Path, engines: Engines) -> None:
    r = await post(home, {"input": "hi", "instructions": "Be brief.", "metadata": {"k": "v"}, "temperature": 0.2})
    assert r.status_code == 200, r.text
    data = r.json()
    validate("Response", data)
    assert data["object"] == "response" and data["id"].startswith("resp_") and data["status"] == "completed"
    assert data["instructions"] == "Be brief." and data["metadata"] == {"k": "v"} and data["store"] is True
    [message] = data["output"]
    assert message["type"] == "message" and message["role"] == "assistant" and message["status"] == "completed"
    assert message["content"][0]["type"] == "output_text"
    assert message["content"][0]["text"] == "Hello from the fake engine."
    usage = data["usage"]
    assert usage["output_tokens"] == len("Hello from the fake engine.") + 1  # the end token counts
    assert usage["input_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_tokens_details"]["cached_tokens"] == 0
    assert usage["output_tokens_details"]["reasoning_tokens"] == 0
    request = engines[MODEL].requests[-1]
    prompt = engines[MODEL].detokenize(request.prompt)
    assert prompt.index("Be brief.") < prompt.index("hi") and request.sampling.temperature == pytest.approx(0.2)


async def test_stream_events(home: Path, engines: Engines) -> None:
    r = await post(home, {"input": "hi", "stream": True})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    got = events(r.text)
    kinds = [e["type"] for e in got]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert set(kinds[4:-4]) == {"response.output_text.delta"}
    text = "".join(e["delta"] for e in got if e["type"] == "response.output_text.delta")
    assert text == "Hello from the fake engine." == got[-4]["text"]
    assert got[0]["response"]["status"] == "in_progress" and got[0]["response"]["output"] == []
    final = got[-1]["response"]
    validate("Response", final)
    assert final["output"][0]["content"][0]["text"] == text
    assert final["usage"]["output_tokens"] == len(text) + 1  # the end token counts


async def test_max_output_tokens_is_incomplete(home: Path, engines: Engines) -> None:
    r = await post(home, {"input": "hi", "max_output_tokens": 4})
    data = r.json()
    assert data["status"] == "incomplete" and data["incomplete_details"] == {"reason": "max_output_tokens"}
    assert data["output"][0]["status"] == "incomplete" and data["output"][0]["content"][0]["text"] == "Hell"
    r = await post(home, {"input": "hi", "max_output_tokens": 4, "stream": True})
    got = events(r.text)
    assert got[-1]["type"] == "response.incomplete"
    assert got[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}


async def test_function_call_events(home: Path, engines: Engines) -> None:
    engines.reply = CALL
    r = await post(home, {"input": "weather?", "tools": [TOOL], "tool_choice": "required", "stream": True})
    got = events(r.text)
    kinds = [e["type"] for e in got]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.function_call_arguments.delta", "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"]
    assert got[2]["item"]["type"] == "function_call" and got[2]["item"]["status"] == "in_progress"
    item = got[-1]["response"]["output"][0]
    assert item["type"] == "function_call" and item["name"] == "get_weather" and item["call_id"].startswith("call_")
    assert json.loads(item["arguments"]) == {"city": "Paris"} == json.loads(got[4]["arguments"])
    assert "get_weather" in (engines[MODEL].requests[-1].sampling.grammar or "")


async def test_named_tool_choice_and_parallel(home: Path, engines: Engines) -> None:
    engines.reply = CALL
    r = await post(home, {"input": "weather?", "tools": [TOOL], "parallel_tool_calls": False,
                          "tool_choice": {"type": "function", "name": "get_weather"}})
    assert r.status_code == 200, r.text
    assert r.json()["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert r.json()["parallel_tool_calls"] is False
    grammar = engines[MODEL].requests[-1].sampling.grammar or ""
    assert "tc-calls ::= tc-call\n" in grammar  # one call only
    r = await post(home, {"input": "weather?", "tools": [TOOL], "tool_choice": "none"})
    assert r.json()["output"][0]["type"] == "message" and engines[MODEL].requests[-1].sampling.grammar is None


async def test_tool_round_trip_in_the_input(home: Path, engines: Engines) -> None:
    """A client that sends the whole conversation back (as the Agents SDK does)."""
    items = [{"role": "user", "content": [{"type": "input_text", "text": "weather in Paris?"}]},
             {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}',
              "id": "fc_1", "status": "completed"},
             {"type": "function_call_output", "call_id": "call_1", "output": "sunny, 21 C"}]
    r = await post(home, {"input": items, "tools": [TOOL]})
    assert r.status_code == 200, r.text
    prompt = engines[MODEL].detokenize(engines[MODEL].requests[-1].prompt)
    assert "sunny, 21 C" in prompt and '"city": "Paris"' in prompt


@pytest.mark.parametrize(("kind", "extra"), [("json_schema", {"name": "city", "strict": True, "schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}), ("json_object", {})])
async def test_text_format(kind: str, extra: dict[str, Any], home: Path, engines: Engines) -> None:
    engines.reply = '{"city": "Paris"}'
    r = await post(home, {"input": "json please", "text": {"format": {"type": kind, **extra}}})
    assert r.status_code == 200, r.text
    assert json.loads(r.json()["output"][0]["content"][0]["text"]) == {"city": "Paris"}
    assert r.json()["text"]["format"]["type"] == kind
    assert engines[MODEL].requests[-1].sampling.grammar


async def test_logprobs_through_include(home: Path, engines: Engines) -> None:
    r = await post(home, {"input": "hi", "include": ["message.output_text.logprobs"], "top_logprobs": 2})
    part = r.json()["output"][0]["content"][0]
    assert len(part["logprobs"]) == len(part["text"]) and part["logprobs"][0]["token"] == "H"
    assert engines[MODEL].requests[-1].logprobs == 2


@pytest.mark.parametrize(("body", "param"), [
    ({}, "input"),
    ({"input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
    ({"input": "hi", "max_output_tokens": 10**6}, "max_output_tokens"),
    ({"input": "hi", "temperature": 3}, "temperature"),
    ({"input": "hi", "top_p": 1.5}, "top_p"),
    ({"input": "hi", "truncation": "sometimes"}, "truncation"),
    ({"input": "hi", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, "text.format.schema"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools.0.type"),
    ({"input": "hi", "tools": [{**TOOL, "name": "bad name!"}]}, "tools.0.name"),
    ({"input": "hi", "tools": [TOOL], "text": {"format": {"type": "json_object"}}}, "text.format"),
    ({"input": "hi", "tools": [TOOL], "tool_choice": {"type": "function", "name": "other"}}, "tool_choice"),
    ({"input": "hi", "tool_choice": "sometimes"}, "tool_choice"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]}, "input.0.content.0.type"),
    ({"input": [{"role": "robot", "content": "hi"}]}, "input.0.role"),
    ({"input": [{"type": "function_call_output", "call_id": "nope", "output": "x"}]}, "input.0.call_id"),
    ({"input": [{"type": "function_call", "call_id": "c", "name": "f", "arguments": "{"}]}, "input.0.arguments"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input.0.type"),
    ({"input": "hi", "include": ["everything"]}, "include.0"),
    ({"input": "hi", "metadata": {str(i): "v" for i in range(17)}}, "metadata"),
    ({"input": "hi", "background": True}, "background"),
    ({"input": "hi", "conversation": "conv_1"}, "conversation"),
])
async def test_bad_input_is_400_naming_the_param(body: dict[str, Any], param: str, home: Path,
                                                 engines: Engines) -> None:
    r = await post(home, body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
    assert not any(e.requests for e in engines.opened.values())  # nothing reached the engine


async def test_truncation_auto_drops_the_oldest_turns(home: Path, engines: Engines) -> None:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn{i} " + "x" * 600} for i in range(7)]
    r = await post(home, {"input": turns, "max_output_tokens": 100})
    assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded"
    assert r.json()["error"]["param"] == "input"
    r = await post(home, {"input": turns, "max_output_tokens": 100, "truncation": "auto"})
    assert r.status_code == 200, r.text
    prompt = engines[MODEL].detokenize(engines[MODEL].requests[-1].prompt)
    assert "turn0" not in prompt and "turn6" in prompt and r.json()["truncation"] == "auto"


async def test_failure_in_stream_is_response_failed(home: Path, engines: Engines) -> None:
    engines.reply = '<tool_call>\n{"name": "get_weather", "arguments": {"city": 7}}\n</tool_call>'
    r = await post(home, {"input": "weather?", "tools": [TOOL], "stream": True})
    got = events(r.text)
    assert got[-1]["type"] == "response.failed"
    assert got[-1]["response"]["status"] == "failed" and got[-1]["response"]["error"]["code"] == "server_error"
