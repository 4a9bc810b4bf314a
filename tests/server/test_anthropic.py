"""The Anthropic Messages door with the real ``anthropic`` SDK on the embedded model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anthropic
import jsonschema
import pytest

from tests.conftest import MODEL
from tests.helpers import ServerProcess

WEATHER = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS: list[Any] = [{"name": "get_weather", "description": "Current weather in a city", "input_schema": WEATHER}]
ASK: list[Any] = [{"role": "user", "content": "What is the weather like in Paris today?"}]
# anthropic 2.x dropped temperature / top_p / top_k from its arguments; the server still honours them
KW: dict[str, Any] = {"model": MODEL, "max_tokens": 24, "extra_body": {"temperature": 0}}


@pytest.fixture(scope="module")
def claude(server: ServerProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0, timeout=120)


def test_create(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(system="You answer briefly.", messages=[{"role": "user", "content": "Say hi"}],
                                     **KW)
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.model == MODEL and message.content and message.content[0].type == "text"
    assert message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) > 0
    assert 0 < message.usage.output_tokens <= 24


def test_stop_sequence(claude: anthropic.Anthropic) -> None:
    kw = {**KW, "max_tokens": 64, "messages": [{"role": "user", "content": "Count from 1 to 10, comma separated."}]}
    plain = claude.messages.create(**kw)
    text = plain.content[0].text  # type: ignore[union-attr]
    stop = next(d for d in ("5", "4", "3", "2", ",", " ") if d in text)
    cut = claude.messages.create(stop_sequences=[stop, "never-there"], **kw)
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == stop
    assert stop not in "".join(b.text for b in cut.content if b.type == "text")


def test_stream_helpers(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(messages=[{"role": "user", "content": "Tell me about Paris."}], **KW) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces and "".join(pieces) == final.content[0].text  # type: ignore[union-attr]
    assert final.stop_reason == "max_tokens" and final.usage.output_tokens == 24
    with claude.messages.stream(messages=[{"role": "user", "content": "Hi"}], **KW) as stream:
        kinds = [event.type for event in stream]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "text" in kinds and "message_delta" in kinds


@pytest.mark.parametrize("choice", [{"type": "any"}, {"type": "tool", "name": "get_weather"}])
def test_tool_round_trip(claude: anthropic.Anthropic, choice: dict[str, Any]) -> None:
    first = claude.messages.create(messages=ASK, tools=TOOLS, tool_choice=choice,  # type: ignore[arg-type]
                                   **{**KW, "max_tokens": 48})
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "get_weather" and use.id.startswith("toolu_")
    jsonschema.validate(use.input, WEATHER)
    result = {"type": "tool_result", "tool_use_id": use.id, "content": "18 C and sunny"}
    history: list[Any] = [*ASK, {"role": "assistant", "content": first.content}, {"role": "user", "content": [result]}]
    second = claude.messages.create(messages=history, tools=TOOLS, tool_choice={"type": "none"}, **KW)
    assert second.stop_reason in ("end_turn", "max_tokens")
    assert second.content and second.content[0].type == "text" and second.content[0].text.strip()


def test_streamed_tool_use(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(messages=ASK, tools=TOOLS, tool_choice={"type": "any"},
                                **{**KW, "max_tokens": 48}) as stream:
        final = stream.get_final_message()
    use = next(b for b in final.content if b.type == "tool_use")
    jsonschema.validate(use.input, WEATHER)
    assert final.stop_reason == "tool_use"


def test_prefill_is_continued(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(messages=[{"role": "user", "content": "Name a colour."},
                                               {"role": "assistant", "content": "The colour is"}], **KW)
    text = "".join(b.text for b in message.content if b.type == "text")
    assert text.strip() and not text.startswith("The colour is")


def test_count_tokens(claude: anthropic.Anthropic) -> None:
    counted = claude.messages.count_tokens(model=MODEL, messages=ASK)
    with_tools = claude.messages.count_tokens(model=MODEL, messages=ASK, tools=TOOLS)
    assert 0 < counted.input_tokens < with_tools.input_tokens
    message = claude.messages.create(messages=ASK, **{**KW, "max_tokens": 1})
    assert message.usage.input_tokens + (message.usage.cache_read_input_tokens or 0) == counted.input_tokens


def test_errors_are_typed(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude.messages.create(messages=ASK, **{**KW, "model": "no-such-model"})
    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    with pytest.raises(anthropic.BadRequestError) as bad:
        claude.messages.create(messages=ASK, **{**KW, "extra_body": {"temperature": 1.5}})
    assert "temperature" in bad.value.message


def test_bad_key_is_authentication_error(tmp_path: Path) -> None:
    proc = ServerProcess("--parallel", "1", "--ctx-size", "512", "--api-key", "s3cret",
                         env={"SLM_HOME": str(tmp_path)})
    try:
        wrong = anthropic.Anthropic(base_url=proc.url, api_key="wrong", max_retries=0)
        with pytest.raises(anthropic.AuthenticationError):
            wrong.messages.create(messages=ASK, **KW)
        right = anthropic.Anthropic(base_url=proc.url, api_key="s3cret", max_retries=0)
        assert right.messages.create(messages=ASK, **{**KW, "max_tokens": 2}).usage.output_tokens > 0
    finally:
        proc.close()
