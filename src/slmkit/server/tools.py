"""Tool (function) calls for both APIs, produced under a grammar.

How it works
------------
* A call is written as ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` (the Hermes
  convention that Qwen, SmolLM3 and many fine-tunes are trained on). Several calls, when
  ``parallel_tool_calls`` allows, follow each other separated by a newline.
* The output is constrained by a GBNF grammar built from the tools' JSON schemas, so the
  name is always one of the tools and the arguments always parse and match the schema:
  ``required`` and a named function allow only calls; ``auto`` allows either calls or plain
  text that does not start with ``<`` (so the first character decides, and the model makes
  the choice by itself); ``none`` renders no tools and applies no grammar.
* Templates that render ``tools`` in this convention (they mention ``<tool_call>``) get the
  tools as the ``tools`` variable. Any other template (SmolLM2's ChatML, Gemma's) gets the tool
  descriptions in the system prompt instead, earlier calls rewritten as ``<tool_call>`` text in
  the assistant turns, and tool results as ``<tool_response>`` blocks in a user turn, so
  templates that insist on user/assistant alternation accept the conversation.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from slmkit.engine.base import Engine
from slmkit.engine.llamacpp.grammar import check_schema, json_schema_grammar
from slmkit.engine.llamacpp.refs import localize_refs
from slmkit.errors import InvalidRequest, OutputInvalid

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_PROBE = "slmkit_probe_tool"
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    # the parameters for the grammar: references localized (see engine.llamacpp.refs), and
    # the definitions they point at, to go at the root of the tool-call schema
    arguments: dict[str, Any] = field(default_factory=dict, compare=False)
    defs: dict[str, Any] = field(default_factory=dict, compare=False)

    def as_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description,
                                                 "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass
class ToolPlan:
    """What a request asked for: the tools, and whether and how the model must call them."""

    tools: list[Tool]
    choice: str = "auto"  # auto | required | a function name (none never makes a plan)
    parallel: bool = True
    grammar: str = ""
    by_name: dict[str, Tool] = field(default_factory=dict)

    @property
    def must_call(self) -> bool:
        return self.choice != "auto"


def parse_tools(raw: list[dict[str, Any]] | None, param: str = "tools",
                schema_param: str = "function.parameters") -> list[Tool]:
    """OpenAI- or Ollama-shaped tool definitions, checked (400 naming ``param`` otherwise;
    ``schema_param``: the door's name for a tool's schema, e.g. Anthropic's ``input_schema``)."""
    tools: list[Tool] = []
    for i, item in enumerate(raw or []):
        where = f"{param}.{i}"
        if not isinstance(item, dict) or item.get("type", "function") != "function":
            raise InvalidRequest(f"{where}: only tools of type 'function' are supported", param=where)
        fn = item.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not _NAME.match(fn["name"]):
            raise InvalidRequest(f"{where}.function.name must be 1-64 letters, digits, '_', '.' or '-'",
                                 param=f"{where}.function.name")
        params = fn.get("parameters") or EMPTY_PARAMETERS
        check_schema(params, f"{where}.{schema_param}")
        arguments, defs = localize_refs(params, f"t{i}", f"{where}.{schema_param}",
                                        f"{where}.{schema_param} (tool '{fn['name']}')")
        tools.append(Tool(name=fn["name"], description=str(fn.get("description") or ""), parameters=params,
                          arguments=arguments, defs=defs))
    if len({t.name for t in tools}) != len(tools):
        raise InvalidRequest("tool names must be unique", param=param)
    return tools


def plan_tools(tools: list[Tool], tool_choice: Any, parallel: bool | None) -> ToolPlan | None:
    """The plan for a request, or None when no call may be made (no tools, or ``none``)."""
    choice = _choice(tool_choice, tools)
    if not tools and tool_choice is not None and choice != "none":
        raise InvalidRequest(f"tool_choice '{choice}' needs tools (only 'none' may be given without them)",
                             param="tool_choice")
    if choice == "none" or not tools:
        return None
    named = choice not in ("auto", "required")
    plan = ToolPlan(tools=tools, choice=choice, parallel=parallel is not False and not named,
                    by_name={t.name: t for t in tools})
    allowed = [plan.by_name[choice]] if choice in plan.by_name else tools
    plan.grammar = _grammar(allowed, plan)
    return plan


def _choice(tool_choice: Any, tools: list[Tool]) -> str:
    if tool_choice is None:
        return "auto"
    if isinstance(tool_choice, str):
        if tool_choice not in ("auto", "none", "required"):
            raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or a function",
                                 param="tool_choice")
        return tool_choice
    name = (tool_choice.get("function") or {}).get("name") if isinstance(tool_choice, dict) else None
    if not isinstance(name, str):
        raise InvalidRequest("tool_choice must name a function: {'type': 'function', 'function': {'name': ...}}",
                             param="tool_choice")
    if name not in {t.name for t in tools}:
        raise InvalidRequest(f"tool_choice names '{name}', which is not among the tools", param="tool_choice")
    return name


def _grammar(allowed: list[Tool], plan: ToolPlan) -> str:
    alternatives = [{"type": "object", "properties": {"name": {"const": t.name}, "arguments": t.arguments or
                                                     t.parameters}, "required": ["name", "arguments"]} for t in allowed]
    schema: dict[str, Any] = alternatives[0] if len(alternatives) == 1 else {"oneOf": alternatives}
    defs = {name: body for t in allowed for name, body in t.defs.items()}
    if defs:
        schema = {**schema, "$defs": defs}
    grammar = json_schema_grammar(schema, "tools", refs_local=True)
    call_rules = re.sub(r"^root ::=", "tc-json ::=", grammar, flags=re.MULTILINE)
    call = r'tc-call ::= "<tool_call>\n" tc-json "\n</tool_call>"'
    calls = 'tc-calls ::= tc-call ( "\\n" tc-call )*' if plan.parallel else "tc-calls ::= tc-call"
    root = "root ::= tc-calls" if plan.must_call else 'root ::= tc-calls | tc-text\ntc-text ::= [^<] [^\\x00]*'
    return "\n".join([root, calls, call, call_rules])


# -- prompts -------------------------------------------------------------------------
def template_renders_tools(engine: Engine) -> bool:
    """Whether the model's own template renders tools in the ``<tool_call>`` convention."""
    probe = Tool(_PROBE, "probe", EMPTY_PARAMETERS).as_openai()
    try:
        text = engine.render_chat([{"role": "user", "content": "x"}], tools=[probe])
    except InvalidRequest:
        return False
    return _PROBE in text and OPEN in text


def system_prompt(tools: list[Tool]) -> str:
    lines = "\n".join(json.dumps(t.as_openai()["function"], ensure_ascii=False) for t in tools)
    return (
        "You can call functions to help answer. Their signatures, one JSON object per line:\n"
        f"<tools>\n{lines}\n</tools>\n"
        "To call a function, answer only with a JSON object holding its name and arguments inside "
        "tags, like this:\n"
        '<tool_call>\n{"name": "function_name", "arguments": {"argument": "value"}}\n</tool_call>\n'
        "Function results come back inside <tool_response></tool_response> tags. Answer in plain "
        "text when no function is needed."
    )


def prepare_messages(engine: Engine, messages: list[dict[str, Any]], plan: ToolPlan | None,
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """Messages and ``tools`` to render: native for tool-aware templates, rewritten otherwise."""
    has_history = any(m.get("tool_calls") or m.get("role") == "tool" for m in messages)
    if plan is None and not has_history:
        return messages, None
    if template_renders_tools(engine):
        native = [_native_message(m) for m in messages]
        return native, [t.as_openai() for t in plan.tools] if plan else None
    out = _inline_history(messages)
    if plan is not None:
        prompt = system_prompt(plan.tools)
        if out and out[0]["role"] == "system":
            out[0] = {**out[0], "content": f"{out[0]['content']}\n\n{prompt}"}
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out, None


def _arguments(call: dict[str, Any]) -> dict[str, Any]:
    args = (call.get("function") or {}).get("arguments")
    if isinstance(args, str):
        try:
            parsed = json.loads(args) if args.strip() else {}
        except ValueError as exc:
            raise InvalidRequest(f"tool call arguments are not valid JSON: {exc}", param="messages") from exc
        return parsed if isinstance(parsed, dict) else {"value": parsed}
    return args if isinstance(args, dict) else {}


def _native_message(m: dict[str, Any]) -> dict[str, Any]:
    if not m.get("tool_calls"):
        return m
    calls = [{"type": "function", "id": c.get("id"),
              "function": {"name": (c.get("function") or {}).get("name"), "arguments": _arguments(c)}}
             for c in m["tool_calls"]]
    return {**m, "tool_calls": calls}


def _call_text(call: dict[str, Any]) -> str:
    body = {"name": (call.get("function") or {}).get("name"), "arguments": _arguments(call)}
    return f"{OPEN}\n{json.dumps(body, ensure_ascii=False)}\n{CLOSE}"


def _inline_history(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.get("role") == "tool":
            block = f"<tool_response>\n{m.get('content', '')}\n</tool_response>"
            if out and out[-1].get("_tool_results"):
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "_tool_results": True})
        elif m.get("tool_calls"):
            calls = "\n".join(_call_text(c) for c in m["tool_calls"])
            text = m.get("content") or ""
            out.append({"role": "assistant", "content": f"{text}\n{calls}" if text else calls})
        else:
            out.append({k: v for k, v in m.items() if k not in ("tool_calls", "tool_call_id")})
    return [{k: v for k, v in m.items() if k != "_tool_results"} for m in out]


# -- parsing the output ----------------------------------------------------------------
def parse_calls(text: str, plan: ToolPlan) -> list[ToolCall]:
    """The complete calls in ``text``; each is checked against its tool's schema."""
    calls = []
    for match in _CALL.finditer(text):
        try:
            body = json.loads(match.group(1), strict=False)
        except ValueError as exc:
            raise OutputInvalid(f"the model wrote a tool call that is not JSON: {exc}") from exc
        tool = plan.by_name.get(str(body.get("name"))) if isinstance(body, dict) else None
        if tool is None:
            raise OutputInvalid(f"the model called an unknown tool: {match.group(1)[:80]}")
        arguments = body.get("arguments") or {}
        try:
            jsonschema.validate(arguments, tool.parameters)
        except jsonschema.ValidationError as exc:
            raise OutputInvalid(f"the model's call of {tool.name} does not match its parameters: "
                                f"{exc.message}") from exc
        calls.append(ToolCall(id=f"call_{uuid.uuid4().hex[:24]}", name=tool.name, arguments=arguments))
    return calls


class ToolCallStream:
    """Splits streamed text into content and completed tool calls.

    Under a plan, output that starts with ``<`` is calls (the grammar allows nothing else
    there); calls are released one by one as each closing tag arrives. Small models tend to
    repeat the same call until ``max_tokens``: an identical call is dropped and ``repeated``
    tells the caller to stop the generation there."""

    def __init__(self, plan: ToolPlan | None) -> None:
        self.plan = plan
        self.mode = "text" if plan is None else ("calls" if plan.must_call else "undecided")
        self.buffer = ""
        self.calls: list[ToolCall] = []
        self.repeated = False  # the model began repeating a call: the caller should stop it

    def feed(self, text: str) -> tuple[str, list[ToolCall]]:
        """Content to show now, and calls completed by this piece."""
        if self.mode == "text":
            return text, []
        self.buffer += text
        if self.mode == "undecided":
            stripped = self.buffer.lstrip()
            if not stripped:
                return "", []
            self.mode = "calls" if stripped.startswith("<") else "text"
            if self.mode == "text":
                out, self.buffer = self.buffer, ""
                return out, []
        return "", self._complete()

    def _complete(self) -> list[ToolCall]:
        assert self.plan is not None
        end = self.buffer.rfind(CLOSE)
        if end < 0:
            return []
        done, self.buffer = self.buffer[: end + len(CLOSE)], self.buffer[end + len(CLOSE):]
        seen = {(c.name, c.arguments_json) for c in self.calls}
        fresh = []
        for call in parse_calls(done, self.plan):
            if (call.name, call.arguments_json) in seen:
                self.repeated = True
                break
            seen.add((call.name, call.arguments_json))
            fresh.append(call)
        self.calls.extend(fresh)
        return fresh

    def finish(self) -> str:
        """Text still held back at the end (an unfinished call when max_tokens cut it)."""
        rest, self.buffer = self.buffer, ""
        return rest if self.mode != "calls" else ""
