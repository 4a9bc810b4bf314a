"""OpenAI conformance gaps of issue 15, through the real ``openai`` and ``ollama`` clients against the
real server and model: pydantic tool schemas, ``logprobs: 0``, the 400s for contradictory requests,
and how a request whose model ends at once is counted."""

from __future__ import annotations

from enum import Enum
from typing import Any

import httpx
import ollama
import openai
import pytest
from pydantic import BaseModel

from tests.conftest import MODEL
from tests.helpers import ServerProcess

ASK = [{"role": "user", "content": "What is the weather like in Paris, France today?"}]
END = "2"  # SmolLM2's <|im_end|>: a bias of 100 makes it the first token
KW: dict[str, Any] = {"model": MODEL, "temperature": 0, "max_tokens": 56}  # a call takes about 40 tokens


class Unit(str, Enum):
    celsius = "celsius"
    fahrenheit = "fahrenheit"


class Place(BaseModel):
    city: str
    country: str


class Weather(BaseModel):
    """Current weather at a place."""

    place: Place
    unit: Unit


def _weather_tool() -> dict[str, Any]:
    return {"type": "function", "function": {"name": "get_weather", "description": "Current weather at a place",
                                             "parameters": Weather.model_json_schema()}}


# -- 1. pydantic tool schemas ($defs / $ref) ---------------------------------------------------------
def test_openai_client_with_a_pydantic_tool(client: openai.OpenAI) -> None:
    assert "$defs" in Weather.model_json_schema()
    for tool in (_weather_tool(), openai.pydantic_function_tool(Weather, name="get_weather")):
        resp = client.chat.completions.create(messages=ASK, tools=[tool], tool_choice="required",  # type: ignore[list-item]
                                              parallel_tool_calls=False, **KW)
        calls = resp.choices[0].message.tool_calls
        assert resp.choices[0].finish_reason == "tool_calls" and calls and len(calls) == 1
        Weather.model_validate_json(calls[0].function.arguments)  # type: ignore[union-attr]


def test_openai_client_streams_a_pydantic_tool_call(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(messages=ASK, tools=[_weather_tool()],  # type: ignore[list-item]
                                                 tool_choice="required", parallel_tool_calls=False, stream=True, **KW))
    calls = [c for ch in chunks if ch.choices for c in ch.choices[0].delta.tool_calls or []]
    assert len(calls) == 1 and calls[0].function is not None
    Weather.model_validate_json(calls[0].function.arguments or "")


def test_ollama_client_with_a_pydantic_tool(ollama_client: ollama.Client) -> None:
    """The ``ollama`` client (0.6) keeps ``$defs`` but drops each property's ``$ref`` before sending
    (its ``Property`` model has no such field), so the server sees ``place: {}``: the request must
    still answer, with a call whose arguments are the tool's fields. The whole schema reaches the
    server over plain HTTP (next test)."""
    resp = ollama_client.chat(model=MODEL, messages=ASK, tools=[_weather_tool()],
                              options={"temperature": 0, "num_predict": 56})
    calls = resp.message.tool_calls or []
    assert calls or resp.message.content
    for call in calls:
        assert call.function.name == "get_weather" and set(call.function.arguments) <= {"place", "unit"}


def test_ollama_route_forced_pydantic_tool_call(server: ServerProcess) -> None:
    body = {"model": MODEL, "messages": ASK, "tools": [_weather_tool()], "tool_choice": "required", "stream": False,
            "options": {"temperature": 0, "num_predict": 56}}
    r = httpx.post(f"{server.url}/api/chat", json=body, timeout=120)
    assert r.status_code == 200, r.text
    calls = r.json()["message"]["tool_calls"]
    Weather.model_validate(calls[0]["function"]["arguments"])


def test_recursive_schema_without_nesting_is_400_naming_the_tool(client: openai.OpenAI) -> None:
    tool = {"type": "function", "function": {"name": "loop", "parameters": {"$ref": "#/$defs/A", "$defs": {
        "A": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "string"}]}}}}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(messages=ASK, tools=[tool], **KW)  # type: ignore[list-item]
    assert err.value.param == "tools.0.function.parameters" and "loop" in err.value.message


def test_recursive_tree_schema_works(client: openai.OpenAI) -> None:
    class Node(BaseModel):
        name: str
        children: list[Node]

    tool = {"type": "function", "function": {"name": "tree", "parameters": Node.model_json_schema()}}
    resp = client.chat.completions.create(messages=[{"role": "user", "content": "Make a tiny tree."}],
                                          tools=[tool], tool_choice="required", parallel_tool_calls=False,  # type: ignore[list-item]
                                          model=MODEL, temperature=0, max_tokens=40)
    choice = resp.choices[0]
    if choice.finish_reason == "tool_calls":  # a deep tree may run past max_tokens
        Node.model_validate_json(choice.message.tool_calls[0].function.arguments)  # type: ignore[index,union-attr]


# -- 3. logprobs: 0 --------------------------------------------------------------------------------
def test_completion_logprobs_zero_has_the_sampled_token(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=MODEL, prompt="One, two, three,", max_tokens=4, temperature=0, logprobs=0)
    lp = resp.choices[0].logprobs
    assert lp is not None and lp.tokens and lp.top_logprobs and lp.token_logprobs
    for token, value, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs, strict=True):
        assert top == {token: value}
    two = client.completions.create(model=MODEL, prompt="One, two, three,", max_tokens=4, temperature=0, logprobs=2)
    assert two.choices[0].logprobs and all(1 <= len(t) <= 3 for t in two.choices[0].logprobs.top_logprobs or [])


def test_chat_top_logprobs_zero_is_empty(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(messages=ASK, logprobs=True, top_logprobs=0, **{**KW, "max_tokens": 4})
    content = resp.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and all(item.top_logprobs == [] for item in content)


# -- 4. contradictory requests -----------------------------------------------------------------------
@pytest.mark.parametrize(("extra", "param"), [
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"seed": 2**63}, "seed"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"tools": []}, "tools"),
])
def test_contradictions_are_400(client: openai.OpenAI, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(messages=ASK, **KW, **extra)
    assert err.value.param == param


def test_completions_stream_options_without_stream_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.completions.create(model=MODEL, prompt="Hi", max_tokens=2,
                                  stream_options={"include_usage": True})  # type: ignore[call-overload]
    assert err.value.param == "stream_options"


# -- 5. a model that ends at once ---------------------------------------------------------------------
def test_immediate_end_counts_one_completion_token(client: openai.OpenAI) -> None:
    bias = {END: 100}
    chat = client.chat.completions.create(messages=ASK, logit_bias=bias, **KW)
    assert chat.choices[0].message.content == "" and chat.choices[0].finish_reason == "stop"
    assert chat.usage is not None and chat.usage.completion_tokens == 1
    chunks = list(client.chat.completions.create(messages=ASK, logit_bias=bias, stream=True,
                                                 stream_options={"include_usage": True}, **KW))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 1
    text = client.completions.create(model=MODEL, prompt="Hello", max_tokens=8, logit_bias=bias, logprobs=1)
    assert text.choices[0].text == "" and text.usage is not None and text.usage.completion_tokens == 1
    assert text.choices[0].logprobs is None or not text.choices[0].logprobs.tokens  # the end token is not shown


def test_end_token_counted_alike_on_every_door(client: openai.OpenAI, ollama_client: ollama.Client) -> None:
    short = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    chat = client.chat.completions.create(messages=short, logprobs=True, **KW)
    assert chat.choices[0].finish_reason == "stop" and chat.usage is not None
    shown = len(chat.choices[0].logprobs.content or [])  # type: ignore[union-attr]
    assert chat.usage.completion_tokens == shown + 1  # the visible tokens and the end token
    native = ollama_client.chat(model=MODEL, messages=short, options={"temperature": 0, "num_predict": 56})
    assert native.eval_count == chat.usage.completion_tokens
