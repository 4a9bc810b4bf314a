"""The tool-call machinery without a model: plans, grammars, prompts and the output splitter."""

from __future__ import annotations

from typing import Any

import llama_cpp as ll
import pytest

from slmkit.engine.llamacpp.bindings import Model
from slmkit.engine.llamacpp.template import CHATML, ChatTemplate
from slmkit.errors import InvalidRequest
from slmkit.server.tools import ToolCallStream, parse_calls, parse_tools, plan_tools, prepare_messages
from slmkit.store.embedded import EMBEDDED

TOOLS = parse_tools([
    {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}},
])
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


class TemplateOnly:
    """Renders chats with a real chat template (all prepare_messages needs of an engine)."""

    def __init__(self, source: str) -> None:
        self.template = ChatTemplate(source)

    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                    tools: list[dict[str, Any]] | None = None) -> str:
        return self.template.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)


HERMES = ("{% if tools %}<tools>{% for t in tools %}{{ t | tojson }}{% endfor %}</tools> Use <tool_call>.{% endif %}"
          + CHATML)


def test_plans() -> None:
    assert plan_tools(TOOLS, "none", None) is None
    assert plan_tools([], None, None) is None
    auto = plan_tools(TOOLS, None, None)
    assert auto is not None and auto.choice == "auto" and auto.parallel and "tc-text" in auto.grammar
    named = plan_tools(TOOLS, {"type": "function", "function": {"name": "add"}}, True)
    assert named is not None and not named.parallel and '"\\"add\\""' in named.grammar
    assert '"\\"get_weather\\""' not in named.grammar
    single = plan_tools(TOOLS, "required", False)
    assert single is not None and "tc-calls ::= tc-call\n" in single.grammar + "\n"
    with pytest.raises(InvalidRequest):
        plan_tools(TOOLS, "sometimes", None)


def test_grammars_parse_in_llama_cpp() -> None:
    model = Model(EMBEDDED["smollm2-135m-instruct"].path(), vocab_only=True)
    try:
        for choice in ("auto", "required", {"type": "function", "function": {"name": "add"}}):
            plan = plan_tools(TOOLS, choice, True)
            assert plan is not None
            sampler = ll.llama_sampler_init_grammar(model.vocab, plan.grammar.encode(), b"root")
            assert sampler, choice
            ll.llama_sampler_free(sampler)
    finally:
        model.close()


def test_stream_splits_text_calls_and_stops_repeats() -> None:
    plan = plan_tools(TOOLS, "auto", True)
    text = ToolCallStream(plan)
    assert text.feed("  ") == ("", [])
    assert text.feed("Hello") == ("  Hello", [])
    assert text.feed(" <b>") == (" <b>", [])
    calls = ToolCallStream(plan)
    shown = [calls.feed(piece) for piece in (CALL[:9], CALL[9:40], CALL[40:], "\n", CALL)]
    assert all(out == "" for out, _ in shown)
    found = [c for _, got in shown for c in got]
    assert [(c.name, c.arguments) for c in found] == [("get_weather", {"city": "Paris"})]
    assert calls.repeated, "the identical second call is dropped and flagged"
    assert calls.finish() == ""


def test_parse_calls_checks_the_schema() -> None:
    plan = plan_tools(TOOLS, "required", True)
    assert plan is not None
    bad = '<tool_call>\n{"name": "add", "arguments": {"a": "one"}}\n</tool_call>'
    with pytest.raises(Exception, match="not of type"):
        parse_calls(bad, plan)


def test_prompt_for_a_template_without_tools() -> None:
    plan = plan_tools(TOOLS, "auto", True)
    history = [{"role": "user", "content": "Weather?"},
               {"role": "assistant", "content": "", "tool_calls": [
                   {"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                                  "arguments": '{"city": "Paris"}'}}]},
               {"role": "tool", "tool_call_id": "c1", "content": "21C"},
               {"role": "tool", "tool_call_id": "c2", "content": "sunny"}]
    messages, tools = prepare_messages(TemplateOnly(CHATML), history, plan)  # type: ignore[arg-type]
    assert tools is None
    assert messages[0]["role"] == "system" and '"name": "get_weather"' in messages[0]["content"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[2]["content"] == CALL
    assert messages[3]["content"].count("<tool_response>") == 2  # consecutive results merge


def test_prompt_for_a_tool_aware_template() -> None:
    plan = plan_tools(TOOLS, "auto", True)
    history = [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1}'}}]}]
    messages, tools = prepare_messages(TemplateOnly(HERMES), history, plan)  # type: ignore[arg-type]
    assert tools is not None and tools[0]["function"]["name"] == "get_weather"
    assert messages[0]["tool_calls"][0]["function"]["arguments"] == {"a": 1}  # templates expect objects


@pytest.mark.parametrize(("raw", "param"), [
    ([{"type": "function", "function": {"name": "x", "parameters": {"type": 5}}}], "tools.0.function.parameters"),
    ([{"type": "function", "function": {"name": ""}}], "tools.0.function.name"),
    ([{"type": "function", "function": {"name": "a"}}, {"type": "function", "function": {"name": "a"}}], "tools"),
])
def test_bad_tools(raw: list[dict[str, Any]], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_tools(raw)
    assert info.value.param == param
