"""The door matrix: each behaviour of the use-case layer, through every door.

Doors: OpenAI chat, OpenAI completions, OpenAI Responses, Ollama chat, Ollama generate, Anthropic
messages (HTTP, in process over ASGITransport), and the Python API. ``slm run`` is covered in
tests/cli/test_run_door.py.
Every door reaches the same FakeEngine, so a test checks both what the client got and what
reached the engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import slmkit
from slmkit.errors import SlmkitError
from tests.inprocess import MODEL, Engines, app_client, make_key, make_profile, settings

pytestmark = pytest.mark.asyncio

TUNED = """FROM smollm2-135m-instruct
SYSTEM You are Tuned.
PARAMETER temperature 0.13
PARAMETER top_k 7
PARAMETER num_predict 5
"""
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
                                           "parameters": SCHEMA}}]
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


@dataclass
class Answer:
    """What a door answered, in neutral terms."""

    status: int
    text: str = ""
    finish: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    error: Any = None  # the error body (HTTP) or exception (Python API)


Ask = Callable[..., Awaitable[Answer]]


# -- the doors -------------------------------------------------------------------------------
async def _http(home: Path, path: str, body: dict[str, Any], key: str | None = None, **config: Any) -> Any:
    async with app_client(settings(home, **config), key) as client:
        return await asyncio.wait_for(client.post(path, json=body), 60)


async def openai_chat(home: Path, model: str = MODEL, prompt: str = "hi", key: str | None = None,
                      **opts: Any) -> Answer:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    if "format" in opts:
        body["response_format"] = {"type": "json_schema", "json_schema": {"name": "r", "schema": opts.pop("format")}}
    r = await _http(home, "/v1/chat/completions", {**body, **opts}, key)
    if r.status_code != 200:
        return Answer(r.status_code, error=r.json())
    choice = r.json()["choices"][0]
    calls = [{"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
             for c in choice["message"].get("tool_calls") or []]
    return Answer(200, choice["message"]["content"] or "", choice["finish_reason"], calls)


async def openai_completions(home: Path, model: str = MODEL, prompt: str = "hi", key: str | None = None,
                             **opts: Any) -> Answer:
    if "format" in opts:
        opts["response_format"] = {"type": "json_schema", "json_schema": {"name": "r", "schema": opts.pop("format")}}
    r = await _http(home, "/v1/completions", {"model": model, "prompt": prompt, **opts}, key)
    if r.status_code != 200:
        return Answer(r.status_code, error=r.json())
    choice = r.json()["choices"][0]
    return Answer(200, choice["text"], choice["finish_reason"])


async def openai_responses(home: Path, model: str = MODEL, prompt: str = "hi", key: str | None = None,
                           **opts: Any) -> Answer:
    body: dict[str, Any] = {"model": model, "input": prompt}
    if "max_tokens" in opts:
        body["max_output_tokens"] = opts.pop("max_tokens")
    if "format" in opts:
        body["text"] = {"format": {"type": "json_schema", "name": "r", "schema": opts.pop("format"), "strict": True}}
    if "tools" in opts:
        body["tools"] = [{"type": "function", **t["function"]} for t in opts.pop("tools")]
    r = await _http(home, "/v1/responses", {**body, **opts}, key)
    if r.status_code != 200:
        return Answer(r.status_code, error=r.json())
    output = r.json()["output"]
    text = "".join(p["text"] for item in output if item["type"] == "message" for p in item["content"])
    calls = [{"name": i["name"], "arguments": json.loads(i["arguments"])} for i in output
             if i["type"] == "function_call"]
    finish = "tool_calls" if calls else "length" if r.json()["status"] == "incomplete" else "stop"
    return Answer(200, text, finish, calls)


def _ollama_options(opts: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"stream": False, "options": {}}
    if "max_tokens" in opts:
        body["options"]["num_predict"] = opts.pop("max_tokens")
    for name in ("stop", "temperature", "top_k", "seed"):
        if name in opts:
            body["options"][name] = opts.pop(name)
    if "format" in opts:
        body["format"] = opts.pop("format")
    return {**body, **opts}


async def ollama_chat(home: Path, model: str = MODEL, prompt: str = "hi", key: str | None = None,
                      **opts: Any) -> Answer:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], **_ollama_options(opts)}
    r = await _http(home, "/api/chat", body, key)
    if r.status_code != 200:
        return Answer(r.status_code, error=r.json())
    data = r.json()
    calls = [{"name": c["function"]["name"], "arguments": c["function"]["arguments"]}
             for c in data["message"].get("tool_calls") or []]
    return Answer(200, data["message"]["content"], "tool_calls" if calls else data["done_reason"], calls)


async def ollama_generate(home: Path, model: str = MODEL, prompt: str = "hi", key: str | None = None,
                          **opts: Any) -> Answer:
    r = await _http(home, "/api/generate", {"model": model, "prompt": prompt, **_ollama_options(opts)}, key)
    if r.status_code != 200:
        return Answer(r.status_code, error=r.json())
    return Answer(200, r.json()["response"], r.json()["done_reason"])


ANTHROPIC_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
ANTHROPIC_TYPES = {400: "invalid_request_error", 403: "permission_error", 404: "not_found_error", 500: "api_error"}


def _anthropic_body(model: str, prompt: str, opts: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "max_tokens": opts.pop("max_tokens", 256),  # required here
                            "messages": [{"role": "user", "content": prompt}]}
    if "stop" in opts:
        body["stop_sequences"] = opts.pop("stop")
    if "format" in opts:
        body["output_config"] = {"format": {"type": "json_schema", "schema": opts.pop("format")}}
    if "tools" in opts:
        body["tools"] = [{"name": t["function"]["name"], "description": t["function"]["description"],
                          "input_schema": t["function"]["parameters"]} for t in opts.pop("tools")]
    return {**body, **opts}


async def anthropic_messages(home: Path, model: str = MODEL, prompt: str = "hi", key: str | None = None,
                             **opts: Any) -> Answer:
    r = await _http(home, "/v1/messages", _anthropic_body(model, prompt, opts), key)
    if r.status_code != 200:
        return Answer(r.status_code, error=r.json())
    data = r.json()
    text = "".join(b["text"] for b in data["content"] if b["type"] == "text")
    calls = [{"name": b["name"], "arguments": b["input"]} for b in data["content"] if b["type"] == "tool_use"]
    return Answer(200, text, ANTHROPIC_FINISH[data["stop_reason"]], calls)


async def python_api(home: Path, model: str = MODEL, prompt: str = "hi", key: str | None = None,
                     **opts: Any) -> Answer:
    if "format" in opts:
        opts["response_format"] = opts.pop("format")
    try:
        m = await _to_thread(slmkit.load, model, home=home, api_key=key, ctx_size=2048)
    except SlmkitError as exc:
        return Answer(exc.status, error=exc)
    try:
        out = await m.achat(prompt, **opts)
    except SlmkitError as exc:
        return Answer(exc.status, error=exc)
    finally:
        await _to_thread(m.close)
    calls = [{"name": c.name, "arguments": c.arguments} for c in out.tool_calls]
    return Answer(200, out.text, out.finish_reason, calls)


async def _to_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(fn, *args, **kwargs)


CHAT_DOORS = [openai_chat, openai_responses, ollama_chat, ollama_generate, anthropic_messages, python_api]
DOORS = [openai_chat, openai_completions, openai_responses, ollama_chat, ollama_generate, anthropic_messages,
         python_api]
TOOL_DOORS = [openai_chat, openai_responses, ollama_chat, anthropic_messages, python_api]
HTTP = {openai_chat: "openai", openai_completions: "openai", openai_responses: "openai", ollama_chat: "ollama",
        ollama_generate: "ollama", anthropic_messages: "anthropic"}


def check_error_shape(door: Ask, answer: Answer, status: int, param: str | None = None,
                      code: str | None = None) -> None:
    assert answer.status == status, answer
    if door is python_api:
        assert isinstance(answer.error, SlmkitError) and answer.error.status == status
        assert code is None or answer.error.code == code
        assert param is None or answer.error.param == param
    elif HTTP[door] == "ollama":
        assert set(answer.error) == {"error"} and isinstance(answer.error["error"], str) and answer.error["error"]
    elif HTTP[door] == "anthropic":  # no code or param in this shape: the type says what kind
        assert answer.error["type"] == "error" and set(answer.error["error"]) == {"type", "message"}
        assert answer.error["error"]["type"] == ANTHROPIC_TYPES[status] and answer.error["error"]["message"]
    else:
        error = answer.error["error"]
        assert set(error) >= {"message", "type", "param", "code"}
        assert code is None or error["code"] == code
        assert param is None or error["param"] == param


# -- the behaviours ------------------------------------------------------------------------------
@pytest.mark.parametrize("door", DOORS)
async def test_profile_defaults(door: Ask, home: Path, engines: Engines) -> None:
    make_profile(home, "tuned", TUNED)
    answer = await door(home, "tuned")
    assert answer.status == 200, answer
    request = engines["tuned"].requests[-1]
    assert request.sampling.temperature == pytest.approx(0.13) and request.sampling.top_k == 7
    if door is not anthropic_messages:  # max_tokens is required there: num_predict never fills it
        assert request.max_tokens == 5 and answer.finish == "length" and len(answer.text) == 5
    prompt = engines["tuned"].detokenize(request.prompt)
    assert ("You are Tuned." in prompt) == (door is not openai_completions)  # no template, no SYSTEM


@pytest.mark.parametrize("door", DOORS)
async def test_request_values_win_over_profile(door: Ask, home: Path, engines: Engines) -> None:
    make_profile(home, "tuned", TUNED)
    answer = await door(home, "tuned", temperature=0.5, max_tokens=3)
    assert answer.status == 200, answer
    request = engines["tuned"].requests[-1]
    assert request.sampling.temperature == pytest.approx(0.5) and request.max_tokens == 3


@pytest.mark.parametrize("door", DOORS)
async def test_scope(door: Ask, home: Path, engines: Engines) -> None:
    make_profile(home, "tuned", TUNED)
    key = make_key(settings(home), models=["tuned"])
    answer = await door(home, MODEL, key=key)
    check_error_shape(door, answer, 403, code="model_not_allowed")
    assert MODEL not in engines.opened or not engines[MODEL].requests  # nothing reached it
    assert (await door(home, "tuned", key=key)).status == 200


@pytest.mark.parametrize("door", DOORS)
async def test_caps(door: Ask, home: Path, engines: Engines) -> None:
    answer = await door(home, max_tokens=10**6)
    check_error_shape(door, answer, 400, code="invalid_request")
    assert not any(e.requests for e in engines.opened.values())  # nothing reached the engine


@pytest.mark.parametrize("door", DOORS)
async def test_unknown_model_error_shape(door: Ask, home: Path, engines: Engines) -> None:
    answer = await door(home, "no-such-model")
    check_error_shape(door, answer, 404, code="model_not_found")


@pytest.mark.parametrize("door", DOORS)
async def test_json_schema(door: Ask, home: Path, engines: Engines) -> None:
    engines.reply = '{"city": "Paris"}'
    answer = await door(home, format=SCHEMA, max_tokens=64)
    assert answer.status == 200, answer
    assert json.loads(answer.text) == {"city": "Paris"}
    grammar = engines[MODEL].requests[-1].sampling.grammar
    assert grammar is not None and "city" in grammar


@pytest.mark.parametrize("door", TOOL_DOORS)
async def test_tool_calls(door: Ask, home: Path, engines: Engines) -> None:
    engines.reply = CALL
    answer = await door(home, tools=TOOLS)
    assert answer.status == 200, answer
    assert answer.tool_calls == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert answer.finish == "tool_calls"
    assert "get_weather" in (engines[MODEL].requests[-1].sampling.grammar or "")


# what pydantic's model_json_schema() gives for a model with a nested model and an enum
REF_SCHEMA = {"$defs": {"Place": {"properties": {"city": {"title": "City", "type": "string"}}, "required": ["city"],
                                  "title": "Place", "type": "object"},
                        "Unit": {"enum": ["celsius", "fahrenheit"], "title": "Unit", "type": "string"}},
              "properties": {"place": {"$ref": "#/$defs/Place"},
                             "unit": {"$ref": "#/$defs/Unit", "default": "celsius"}},
              "required": ["place"], "title": "Weather", "type": "object"}
REF_TOOLS = [*TOOLS, {"type": "function", "function": {"name": "weather", "description": "Weather",
                                                        "parameters": REF_SCHEMA}}]


@pytest.mark.parametrize("door", TOOL_DOORS)
async def test_tool_schemas_with_refs(door: Ask, home: Path, engines: Engines) -> None:
    engines.reply = ('<tool_call>\n{"name": "weather", "arguments": {"place": {"city": "Oslo"}, "unit": "celsius"}}'
                     '\n</tool_call>')
    answer = await door(home, tools=REF_TOOLS)
    assert answer.status == 200, answer
    assert answer.tool_calls == [{"name": "weather", "arguments": {"place": {"city": "Oslo"}, "unit": "celsius"}}]
    grammar = engines[MODEL].requests[-1].sampling.grammar or ""
    assert "t1-ref" in grammar and '\\"fahrenheit\\"' in grammar  # the references resolved inside the oneOf
    broken = [{"type": "function", "function": {"name": "loop", "description": "", "parameters": {"$ref": "#"}}}]
    param = {openai_responses: "tools.0.parameters", anthropic_messages: "tools.0.input_schema"}.get(
        door, "tools.0.function.parameters")
    check_error_shape(door, await door(home, tools=broken), 400, param=param)


@pytest.mark.parametrize("door", TOOL_DOORS)
async def test_tools_with_format_is_400(door: Ask, home: Path, engines: Engines) -> None:
    answer = await door(home, tools=TOOLS, format=SCHEMA)
    check_error_shape(door, answer, 400)


@pytest.mark.parametrize("door", TOOL_DOORS)
async def test_unparsable_tool_call_is_output_invalid(door: Ask, home: Path, engines: Engines) -> None:
    engines.reply = '<tool_call>\n{"name": "get_weather", "arguments": {"city": 7}}\n</tool_call>'
    answer = await door(home, tools=TOOLS)
    check_error_shape(door, answer, 500, code="invalid_output")


@pytest.mark.parametrize("door", DOORS)
async def test_stop_strings(door: Ask, home: Path, engines: Engines) -> None:
    engines.reply = "one two STOP three"
    answer = await door(home, stop=["STOP"])
    assert answer.status == 200, answer
    assert answer.text == "one two " and answer.finish == "stop"


LONG = "BEGIN " + "word " * 600 + "END"  # ~3000 tokens (FakeEngine reads bytes), over the 2048 context


@pytest.mark.parametrize("door", DOORS)
async def test_over_long_input(door: Ask, home: Path, engines: Engines) -> None:
    """Ollama's doors truncate by default (the prompt's end stays; ``truncate: false``: 400); the
    OpenAI doors and the Python API answer context_length_exceeded (OpenAI's way)."""
    answer = await door(home, prompt=LONG, max_tokens=8)
    if door in (ollama_chat, ollama_generate):
        assert answer.status == 200, answer
        request = engines[MODEL].requests[-1]
        prompt = engines[MODEL].detokenize(request.prompt)
        assert len(request.prompt) + 8 <= 2048 and "END" in prompt and "BEGIN" not in prompt
        check_error_shape(door, await door(home, prompt=LONG, max_tokens=8, truncate=False), 400)
    else:
        check_error_shape(door, answer, 400, code="context_length_exceeded")
    assert not engines[MODEL].requests or door in (ollama_chat, ollama_generate)  # the last app's engine


@pytest.mark.parametrize("name", [f"{MODEL}:latest", "smollm2:135m"])
@pytest.mark.parametrize("door", DOORS)
async def test_name_latest_accepted(door: Ask, name: str, home: Path, engines: Engines) -> None:
    """``name:latest`` (what Ollama clients send) and the catalog's alias are the same model."""
    answer = await door(home, name)
    assert answer.status == 200, answer
    assert list(engines.opened) == [MODEL] and engines[MODEL].requests
