"""The OpenAI Responses API on the real server and model, through the real ``openai`` SDK and the
OpenAI Agents SDK. Assertions are on behaviour (shapes, schemas, round trips), never on prose."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from tests.conftest import MODEL
from tests.helpers import ServerProcess
from tests.openapi import validate

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
           "additionalProperties": False}
TOOL: Any = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
             "parameters": WEATHER, "strict": True}
KW: dict[str, Any] = {"model": MODEL, "temperature": 0, "max_output_tokens": 48}


def test_create_retrieve_delete(client: openai.OpenAI) -> None:
    resp = client.responses.create(input="Say hello.", instructions="Answer in one short sentence.",
                                   metadata={"case": "crud"}, **KW)
    validate("Response", resp.model_dump(exclude_unset=True))
    assert resp.status in ("completed", "incomplete") and resp.output_text
    assert resp.usage is not None and resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens
    assert resp.usage.input_tokens_details.cached_tokens >= 0
    got = client.responses.retrieve(resp.id)
    assert got.id == resp.id and got.output_text == resp.output_text and got.metadata == {"case": "crud"}
    items = client.responses.input_items.list(resp.id)
    assert [i.type for i in items.data] == ["message"]
    client.responses.delete(resp.id)
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.retrieve(resp.id)
    assert info.value.status_code == 404


def test_max_output_tokens_is_incomplete(client: openai.OpenAI) -> None:
    resp = client.responses.create(model=MODEL, input="Count from one to one hundred in words.", temperature=0,
                                   max_output_tokens=5)
    assert resp.status == "incomplete" and resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens" and resp.usage and resp.usage.output_tokens == 5


def test_stream_events(client: openai.OpenAI) -> None:
    with client.responses.stream(input="Name a colour.", **KW) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds and "response.content_part.added" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text and text == final.output_text
    assert client.responses.retrieve(final.id).output_text == text  # streamed responses are stored too


class City(BaseModel):
    name: str
    country: str


def test_parse_structured_output(client: openai.OpenAI) -> None:
    resp = client.responses.parse(model=MODEL, input="Give a city and its country as JSON.", text_format=City,
                                  temperature=0, max_output_tokens=64)
    assert isinstance(resp.output_parsed, City)
    assert resp.output_parsed == City.model_validate_json(resp.output_text)


def test_function_tool_round_trip(client: openai.OpenAI) -> None:
    first = client.responses.create(input="What is the weather in Paris?", tools=[TOOL], tool_choice="required",
                                    parallel_tool_calls=False, **KW)
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    arguments = json.loads(calls[0].arguments)
    assert set(arguments) == {"city"} and isinstance(arguments["city"], str)
    # tool_choice none: the answer is text (a 135M model given "auto" often calls again)
    second = client.responses.create(
        previous_response_id=first.id, tools=[TOOL], tool_choice="none", **KW,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id,
                "output": json.dumps({"city": arguments["city"], "sky": "sunny", "celsius": 21})}])
    assert second.status in ("completed", "incomplete") and second.previous_response_id == first.id
    assert second.output_text and not [item for item in second.output if item.type == "function_call"]
    listed = client.responses.input_items.list(second.id)
    assert [i.type for i in listed.data] == ["function_call_output"]


def test_unknown_previous_response_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(input="hi", previous_response_id="resp_nope", **KW)
    assert info.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_bad_input_names_the_param(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(input="hi", model=MODEL, max_output_tokens=0)
    assert info.value.body["param"] == "max_output_tokens"  # type: ignore[index]


def test_agents_sdk_runs_a_turn_with_a_function_tool(server: ServerProcess) -> None:
    agents = pytest.importorskip("agents")
    agents.set_tracing_disabled(True)
    seen: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """Current weather in a city."""
        seen.append(city)
        return f"It is sunny and 21 C in {city}."

    llm = openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)
    model = agents.OpenAIResponsesModel(model=MODEL, openai_client=llm)
    settings = agents.ModelSettings(temperature=0, max_tokens=64, tool_choice="required")
    # the tool's result ends the turn: a 135M model asked again with "auto" tends to call again
    agent = agents.Agent(name="weather", instructions="Use the tool to answer.", model=model,
                         model_settings=settings, tools=[get_weather], tool_use_behavior="stop_on_first_tool")
    result = agents.Runner.run_sync(agent, "What is the weather in Paris?", max_turns=2)
    assert len(seen) == 1 and isinstance(seen[0], str)  # the tool ran once, with arguments the model chose
    assert result.final_output == f"It is sunny and 21 C in {seen[0]}."
    [response] = result.raw_responses
    assert response.response_id and response.usage.output_tokens > 0
