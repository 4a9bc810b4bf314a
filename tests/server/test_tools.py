"""Tool calls on both APIs: produced under a grammar, so they always parse and match the schema."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import ollama
import openai
import pytest

from tests.conftest import MODEL
from tests.helpers import ServerProcess
from tests.openapi import validate

WEATHER = {"type": "object", "properties": {"city": {"type": "string"},
                                            "unit": {"enum": ["celsius", "fahrenheit"]}},
           "required": ["city"]}
ADD = {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "get_weather", "description": "Current weather in a city",
                                      "parameters": WEATHER}},
    {"type": "function", "function": {"name": "add", "description": "Add two integers", "parameters": ADD}},
]
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
# one call takes about 35 tokens; with parallel_tool_calls false the grammar ends the answer after it
KW: dict[str, Any] = {"model": MODEL, "temperature": 0, "max_tokens": 48}


def _check_calls(calls: list[Any]) -> None:
    assert calls
    for call in calls:
        assert call.type == "function" and call.id.startswith("call_")
        jsonschema.validate(json.loads(call.function.arguments), SCHEMAS[call.function.name])


@pytest.fixture(scope="module")
def one_call(client: openai.OpenAI) -> Any:
    return client.chat.completions.create(messages=ASK, tools=TOOLS, tool_choice="required",
                                          parallel_tool_calls=False, **KW)


def test_required_gives_valid_calls(one_call: Any) -> None:
    validate("CreateChatCompletionResponse", one_call.model_dump(exclude_unset=True))
    choice = one_call.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    _check_calls(choice.message.tool_calls)
    assert len(choice.message.tool_calls) == 1  # parallel_tool_calls: false


def test_named_function_is_the_one_called(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(messages=[{"role": "user", "content": "What is 2 plus 3?"}], tools=TOOLS,
                                          tool_choice={"type": "function", "function": {"name": "add"}}, **KW)
    calls = resp.choices[0].message.tool_calls
    _check_calls(calls)
    assert [c.function.name for c in calls] == ["add"]


def test_none_gives_text(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(messages=ASK, tools=TOOLS, tool_choice="none", **{**KW, "max_tokens": 12})
    assert resp.choices[0].message.tool_calls is None
    assert resp.choices[0].message.content
    assert resp.choices[0].finish_reason in ("stop", "length")


def test_auto_gives_text_or_valid_calls(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(messages=ASK, tools=TOOLS, tool_choice="auto", **KW)
    validate("CreateChatCompletionResponse", resp.model_dump(exclude_unset=True))
    message = resp.choices[0].message
    if message.tool_calls:
        _check_calls(message.tool_calls)
        assert resp.choices[0].finish_reason == "tool_calls"
    elif resp.choices[0].finish_reason == "stop":
        assert message.content and not message.content.lstrip().startswith("<")
    else:  # cut by max_tokens: text, or nothing when the cut fell inside a call
        assert resp.choices[0].finish_reason == "length"


def test_streaming_tool_calls(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(messages=ASK, tools=TOOLS, tool_choice="required", stream=True,
                                            parallel_tool_calls=False, stream_options={"include_usage": True}, **KW)
    chunks = list(stream)
    for chunk in chunks:
        validate("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
    deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas and [d.index for d in deltas] == list(range(len(deltas)))
    for delta in deltas:
        assert delta.id and delta.function.name in SCHEMAS
        jsonschema.validate(json.loads(delta.function.arguments), SCHEMAS[delta.function.name])
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_tool_result_is_fed_back(client: openai.OpenAI, one_call: Any) -> None:
    call = one_call.choices[0].message.tool_calls[0]
    history = [*ASK, one_call.choices[0].message.model_dump(exclude_none=True),
               {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temperature_c": 21, "sky": "sunny"})}]
    answer = client.chat.completions.create(messages=history, tools=TOOLS, tool_choice="none",
                                            **{**KW, "max_tokens": 8})
    assert answer.choices[0].message.content
    alone = client.chat.completions.create(messages=ASK, tools=TOOLS, tool_choice="none", **{**KW, "max_tokens": 1})
    # the call and its result were rendered into the prompt
    assert answer.usage.prompt_tokens > alone.usage.prompt_tokens + 20


@pytest.mark.parametrize(("extra", "param"), [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "bogus"}}}]},
     "tools.0.function.parameters"),
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools.0.function.name"),
    ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "missing"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "retrieval"}]}, "tools.0"),
])
def test_bad_tools_are_400(server: ServerProcess, extra: dict[str, Any], param: str) -> None:
    resp = httpx.post(f"{server.base_url}/chat/completions", json={"messages": ASK, **KW, **extra}, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_ollama_tool_calls(ollama_client: ollama.Client, server: ServerProcess) -> None:
    # Ollama has no tool_choice; `auto` lets the model choose, so accept text or valid calls
    resp = ollama_client.chat(model=MODEL, messages=ASK, tools=TOOLS, options={"temperature": 0, "num_predict": 36})
    for call in resp.message.tool_calls or []:
        jsonschema.validate(dict(call.function.arguments), SCHEMAS[call.function.name])
    # our tool_choice extension makes the call certain, streamed and not
    body = {"model": MODEL, "messages": ASK, "tools": TOOLS, "stream": False,
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "options": {"temperature": 0, "num_predict": 48}}
    message = httpx.post(f"{server.url}/api/chat", json=body, timeout=60).json()["message"]
    assert message["tool_calls"]
    for call in message["tool_calls"]:
        jsonschema.validate(call["function"]["arguments"], SCHEMAS[call["function"]["name"]])
    lines = httpx.post(f"{server.url}/api/chat", json={**body, "stream": True}, timeout=60).text.splitlines()
    streamed = [c for line in lines for c in json.loads(line)["message"].get("tool_calls", [])]
    assert [c["function"] for c in streamed] == [c["function"] for c in message["tool_calls"]]


def test_ollama_tool_history_round_trip(ollama_client: ollama.Client) -> None:
    history = [*ASK, {"role": "assistant", "content": "", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": '{"temperature_c": 21}', "tool_name": "get_weather"}]
    resp = ollama_client.chat(model=MODEL, messages=history, tools=TOOLS, options={"temperature": 0, "num_predict": 24})
    assert resp.done and (resp.message.content or resp.message.tool_calls)
