"""OpenAI conformance rules, in process (issue 15): tool schemas with references, ``logprobs: 0``,
the 400s OpenAI gives for contradictory requests, and how an immediate end is counted."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from slmkit.engine.llamacpp.grammar import json_schema_grammar
from slmkit.engine.llamacpp.refs import localize_refs
from slmkit.errors import InvalidRequest
from tests.inprocess import MODEL, Engines, app_client, settings

pytestmark = pytest.mark.asyncio
CHAT: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
DONE = "[DONE]"


class Unit(str, Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class Place(BaseModel):
    city: str
    country: str | None = None


class Weather(BaseModel):
    place: Place
    unit: Unit = Unit.celsius


class Tree(BaseModel):  # recursive: a node's children are nodes
    label: str
    children: list[Tree] = []


def tool(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": name, "parameters": parameters}}


# another "Place" under the same definition name, with another shape: the two must not share a rule
OTHER_PLACE = {"type": "object", "properties": {"at": {"$ref": "#/$defs/Place"}}, "required": ["at"],
               "$defs": {"Place": {"type": "object", "properties": {"lat": {"type": "number"}}, "required": ["lat"]}}}
CALL = ('<tool_call>\n{"name": "get_weather", "arguments": {"place": {"city": "Paris"}, "unit": "celsius"}}'
        '\n</tool_call>')


async def _post(home: Path, path: str, body: dict[str, Any]) -> Any:
    async with app_client(settings(home)) as client:
        return await client.post(path, json=body)


def _sse(text: str) -> list[Any]:
    return [json.loads(line[6:]) if line[6:] != DONE else DONE for line in text.splitlines()
            if line.startswith("data: ")]


def _error(r: Any, status: int, param: str) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) >= {"message", "type", "param", "code"} and error["param"] == param, error
    return str(error["message"])


# -- 1. tool schemas with $ref / $defs ---------------------------------------------------------
async def test_pydantic_tool_schemas_build_one_grammar(home: Path, engines: Engines) -> None:
    engines.reply = CALL
    tools = [tool("get_weather", Weather.model_json_schema()), tool("locate", OTHER_PLACE)]
    r = await _post(home, "/v1/chat/completions", {**CHAT, "tools": tools, "tool_choice": "required"})
    assert r.status_code == 200, r.text
    call = r.json()["choices"][0]["message"]["tool_calls"][0]["function"]
    assert json.loads(call["arguments"]) == {"place": {"city": "Paris"}, "unit": "celsius"}
    grammar = engines[MODEL].requests[-1].sampling.grammar or ""
    assert "t0-ref" in grammar and "t1-ref" in grammar  # each tool's Place is its own rule
    assert all(f'\\"{word}\\"' in grammar for word in ("lat", "city", "fahrenheit"))


async def test_definitions_and_recursion_work(home: Path, engines: Engines) -> None:
    old_style = {"type": "object", "properties": {"p": {"$ref": "#/definitions/P"}},
                 "definitions": {"P": {"type": "string"}}}
    engines.reply = '<tool_call>\n{"name": "tree", "arguments": {"label": "a", "children": []}}\n</tool_call>'
    tools = [tool("tree", Tree.model_json_schema()), tool("old", old_style)]
    r = await _post(home, "/v1/chat/completions", {**CHAT, "tools": tools, "tool_choice": "required"})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(("parameters", "words"), [
    ({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"anyOf": [{"$ref": "#/$defs/A"}]}}},
     "refers to itself"),
    ({"type": "object", "properties": {"x": {"$ref": "#/$defs/Missing"}}}, "does not resolve"),
    ({"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}}, "inside the schema"),
])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/chat"])
async def test_bad_references_are_400_naming_the_tool(parameters: dict[str, Any], words: str, path: str,
                                                      home: Path, engines: Engines) -> None:
    tools = [tool("fine", {"type": "object"}), tool("broken", parameters)]
    r = await _post(home, path, {**CHAT, "tools": tools, "stream": False})
    assert r.status_code == 400, r.text
    message = r.json()["error"] if path.startswith("/api/") else _error(r, 400, "tools.1.function.parameters")
    assert words in message and "broken" in message
    assert not any(e.requests for e in engines.opened.values())


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_localized_references_resolve_at_the_root() -> None:
    body, defs = localize_refs(Weather.model_json_schema(), "t0", "p")
    assert "$defs" not in body and body["properties"]["place"]["$ref"].startswith("#/$defs/t0-ref")
    assert set(defs) == {body["properties"]["place"]["$ref"][8:], body["properties"]["unit"]["$ref"][8:]}
    self_ref, defs = localize_refs({"anyOf": [{"type": "null"}, {"type": "array", "items": {"$ref": "#"}}]}, "x", "p")
    assert self_ref["anyOf"][1]["items"]["$ref"] == "#/$defs/x-ref0-root" and "x-ref0-root" in defs
    with pytest.raises(InvalidRequest):
        localize_refs({"$ref": "#"}, "x", "p")  # only itself: left recursion


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_awkward_definition_names_get_rules_of_their_own() -> None:
    schema = {"type": "object", "properties": {"a": {"$ref": "#/$defs/string"}, "b": {"$ref": "#/$defs/My_Model"}},
              "$defs": {"string": {"enum": ["x", "y"]}, "My_Model": {"type": "integer"}}}
    grammar = json_schema_grammar(schema)
    assert '"\\"x\\""' in grammar and "My_Model" not in grammar and "b ::= integer" in grammar


# -- 3. logprobs: 0 ----------------------------------------------------------------------------------
async def test_completion_logprobs_zero_lists_the_sampled_token(home: Path, engines: Engines) -> None:
    engines.reply = "abc"
    r = await _post(home, "/v1/completions", {"model": MODEL, "prompt": "x", "max_tokens": 3, "logprobs": 0})
    lp = r.json()["choices"][0]["logprobs"]
    assert lp["top_logprobs"] == [{t: v} for t, v in zip(lp["tokens"], lp["token_logprobs"], strict=True)]


async def test_chat_top_logprobs_zero_lists_none(home: Path, engines: Engines) -> None:
    engines.reply = "abc"
    r = await _post(home, "/v1/chat/completions", {**CHAT, "logprobs": True, "top_logprobs": 0})
    content = r.json()["choices"][0]["logprobs"]["content"]
    assert len(content) == 3 and all(item["top_logprobs"] == [] for item in content)


# -- 4. 400s for contradictory requests ------------------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "param"), [
    ("/v1/chat/completions", {**CHAT, "stream_options": {"include_usage": True}}, "stream_options"),
    ("/v1/chat/completions", {**CHAT, "stream": False, "stream_options": {"include_usage": True}}, "stream_options"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
    ("/v1/chat/completions", {**CHAT, "seed": 2**63}, "seed"),
    ("/v1/completions", {"model": MODEL, "prompt": "x", "seed": -(2**63) - 1}, "seed"),
    ("/v1/chat/completions", {**CHAT, "tool_choice": "auto"}, "tool_choice"),
    ("/v1/chat/completions", {**CHAT, "tool_choice": "required"}, "tool_choice"),
    ("/v1/chat/completions", {**CHAT, "tool_choice": {"type": "function", "function": {"name": "f"}}},
     "tool_choice"),
    ("/v1/chat/completions", {**CHAT, "tools": []}, "tools"),
])
async def test_contradictions_are_400(path: str, body: dict[str, Any], param: str, home: Path,
                                      engines: Engines) -> None:
    _error(await _post(home, path, body), 400, param)
    assert not any(e.requests for e in engines.opened.values())


@pytest.mark.parametrize("body", [
    {**CHAT, "tool_choice": "none"}, {**CHAT, "seed": 2**63 - 1}, {**CHAT, "seed": -(2**63)},
    {**CHAT, "stream": True, "stream_options": {"include_usage": True}}, {**CHAT, "stream_options": None},
])
async def test_what_stays_accepted(body: dict[str, Any], home: Path, engines: Engines) -> None:
    r = await _post(home, "/v1/chat/completions", body)
    assert r.status_code == 200, r.text


async def test_ollama_chat_accepts_an_empty_tool_list(home: Path, engines: Engines) -> None:
    r = await _post(home, "/api/chat", {**CHAT, "tools": [], "stream": False})  # what the ollama client sends
    assert r.status_code == 200, r.text


# -- 5. an immediate end counts one token ----------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
async def test_immediate_end_counts_the_end_token(stream: bool, home: Path, engines: Engines) -> None:
    engines.reply = ""
    body = {**CHAT, "stream": stream, **({"stream_options": {"include_usage": True}} if stream else {})}
    r = await _post(home, "/v1/chat/completions", body)
    usage = _sse(r.text)[-2]["usage"] if stream else r.json()["usage"]
    assert usage["completion_tokens"] == 1 and usage["total_tokens"] == usage["prompt_tokens"] + 1
    r = await _post(home, "/api/generate", {"model": MODEL, "prompt": "x", "stream": False})
    assert r.json()["eval_count"] == 1 and r.json()["response"] == ""


# -- never a plain-text 500 ----------------------------------------------------------------------------
def _boom(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("encoder bug")


async def test_unexpected_failure_in_a_stream_is_an_error_frame(home: Path, engines: Engines,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slmkit.server.encode.openai.finish_reason", _boom)
    r = await _post(home, "/v1/chat/completions", {**CHAT, "stream": True})
    frames = _sse(r.text)
    assert frames[-1] == DONE and frames[-2]["error"]["code"] == "internal_error"


async def test_unexpected_failure_in_an_ollama_stream_is_an_error_line(home: Path, engines: Engines,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("slmkit.server.encode.ollama.done_reason", _boom)
    r = await _post(home, "/api/chat", {**CHAT, "stream": True})
    last = json.loads(r.text.strip().splitlines()[-1])
    assert last == {"error": "internal error: RuntimeError"}


@pytest.mark.parametrize(("path", "target"), [
    ("/v1/chat/completions", "slmkit.server.encode.openai.chat_completion"),
    ("/api/chat", "slmkit.server.encode.ollama.done_reason"),
])
async def test_unexpected_failure_is_a_shaped_500(path: str, target: str, home: Path, engines: Engines,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(target, _boom)
    r = await _post(home, path, {**CHAT, "stream": False})
    assert r.status_code == 500 and r.headers["content-type"].startswith("application/json"), r.text
    error = r.json()["error"]
    assert (error if path.startswith("/api/") else error["code"]) in ("internal error: RuntimeError", "internal_error")
