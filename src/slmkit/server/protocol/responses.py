"""OpenAI Responses API request model (``POST /v1/responses``) and its conversion to a ``ChatCall``.

Input items are kept in their normalized Responses shape (each with an ``id``), so a stored
response can list them (``input_items``) and a later request can continue from them
(``previous_response_id``); ``items_to_messages`` turns them into template messages."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from slmkit.errors import InvalidRequest
from slmkit.server.protocol.fields import Count, RequestBody, Seed, Temperature, TopK, TopLogprobs, Unit
from slmkit.server.tools import parse_tools
from slmkit.server.usecases.calls import ChatCall, GenOptions, OutputFormat, Params

LOGPROBS = "message.output_text.logprobs"
# include values that name outputs this server never makes (hosted tools, images, reasoning): accepted, no effect
INCLUDE_NOOP = frozenset({"file_search_call.results", "web_search_call.results", "web_search_call.action.sources",
                          "message.input_image.image_url", "computer_call_output.output.image_url",
                          "code_interpreter_call.outputs", "reasoning.encrypted_content"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text", "refusal"})
PARAMS = Params(input="input", tools="tools", tool_choice="tool_choice", max_tokens="max_output_tokens")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class TextParam(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: TextFormat | None = None


class ResponseRequest(RequestBody):
    """The body of ``POST /v1/responses`` (unknown fields are ignored, as on the other OpenAI routes)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: Count | None = None
    temperature: Temperature | None = None
    top_p: Unit | None = None
    top_logprobs: TopLogprobs | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: TextParam | None = None
    truncation: Literal["auto", "disabled"] | None = None
    metadata: dict[str, str] | None = None
    store: bool = True
    stream: bool = False
    previous_response_id: str | None = None
    include: list[str] | None = None
    user: str | None = None
    background: bool | None = None
    conversation: Any = None
    prompt: Any = None
    # slmkit's extensions (the sampling fields of the chat route that Responses lacks)
    stop: str | list[str] | None = None
    seed: Seed | None = None
    top_k: TopK | None = None
    _items: list[dict[str, Any]] | None = PrivateAttr(None)

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and (len(value) > 16 or any(len(k) > 64 or len(v) > 512 for k, v in value.items())):
            raise ValueError("at most 16 pairs, keys up to 64 characters, values up to 512")
        return value

    @property
    def logprobs(self) -> bool:
        return LOGPROBS in (self.include or [])

    def items(self) -> list[dict[str, Any]]:
        """This request's own input, as normalized items (made once: their ids stay)."""
        if self._items is None:
            self._items = [message_item("user", self.input)] if isinstance(self.input, str) \
                else [_item(raw, f"input.{i}") for i, raw in enumerate(self.input)]
        return self._items

    def to_call(self, history: list[dict[str, Any]]) -> ChatCall:
        """``history``: the items of the previous response's conversation (its input and output)."""
        self._refuse_unsupported()
        messages = items_to_messages([*history, *self.items()], len(history))
        if self.instructions:
            messages.insert(0, {"role": "system", "content": self.instructions})
        options = GenOptions.of(max_tokens=self.max_output_tokens, temperature=self.temperature, top_p=self.top_p,
                                top_k=self.top_k, seed=self.seed, stop=self.stop,
                                logprobs=(self.top_logprobs or 0) if self.logprobs else None)
        truncate = None if self.truncation is None else self.truncation == "auto"
        return ChatCall(model=self.model, messages=messages, options=options, tools=self._tools(),
                        tool_choice=self._tool_choice(), parallel_tool_calls=self.parallel_tool_calls,
                        format=self._format(), truncate=truncate, params=PARAMS)

    def echo(self) -> dict[str, Any]:
        """The request fields a Response object repeats."""
        fmt = self.text.format if self.text and self.text.format else TextFormat(type="text")
        user = {"user": self.user} if self.user is not None else {}
        return {**user, "instructions": self.instructions, "max_output_tokens": self.max_output_tokens,
                "metadata": self.metadata or {}, "parallel_tool_calls": self.parallel_tool_calls is not False,
                "previous_response_id": self.previous_response_id, "reasoning": {"effort": None, "summary": None},
                "store": self.store, "temperature": self.temperature, "top_p": self.top_p,
                "top_logprobs": self.top_logprobs, "text": {"format": fmt.model_dump(by_alias=True, exclude_none=True)},
                "tool_choice": self.tool_choice or "auto", "tools": [_tool_echo(t) for t in self.tools or []],
                "truncation": self.truncation or "disabled", "background": False,
                "service_tier": "default"}

    def _refuse_unsupported(self) -> None:
        if self.background:
            raise InvalidRequest("background responses are not supported: use stream", param="background")
        for name in ("conversation", "prompt"):
            if getattr(self, name) is not None:
                raise InvalidRequest(f"{name} is not supported: use previous_response_id and input", param=name)
        for i, value in enumerate(self.include or []):
            if value != LOGPROBS and value not in INCLUDE_NOOP:
                raise InvalidRequest(f"include value '{value[:80]}' is not supported", param=f"include.{i}")

    def _tools(self) -> list[dict[str, Any]] | None:
        if self.tools is None:
            return None
        out = []
        for i, tool in enumerate(self.tools):
            if tool.get("type", "function") != "function":
                raise InvalidRequest(f"tools.{i}: only function tools are supported, not '{tool.get('type')}' "
                                     "(hosted tools run at OpenAI)", param=f"tools.{i}.type")
            fields = {k: tool.get(k) for k in ("name", "description", "parameters")}
            out.append({"type": "function", "function": fields})
        try:
            parse_tools(out, "tools")  # checked here so a 400 names the Responses field (tools.0.name)
        except InvalidRequest as exc:
            exc.param = re.sub(r"^(tools\.\d+)\.function\.", r"\1.", exc.param or "tools")
            exc.message = re.sub(r"(tools\.\d+)\.function\.", r"\1.", exc.message)
            raise
        return out

    def _tool_choice(self) -> Any:
        choice = self.tool_choice
        if choice is None or isinstance(choice, str):
            return choice
        if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
            raise InvalidRequest("tool_choice must be 'auto', 'none', 'required' or {'type': 'function', "
                                 "'name': ...}", param="tool_choice")
        return {"type": "function", "function": {"name": choice["name"]}}

    def _format(self) -> OutputFormat | None:
        fmt = self.text.format if self.text else None
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return OutputFormat("json_object", param="text.format")
        if fmt.schema_ is None:
            raise InvalidRequest("text.format of type json_schema needs a schema", param="text.format.schema")
        return OutputFormat("json_schema", fmt.schema_, "text.format")


def _tool_echo(tool: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "name": tool.get("name"), "description": tool.get("description"),
            "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
            "strict": tool.get("strict") is not False}


# -- input items ----------------------------------------------------------------------------
def message_item(role: str, text: str, item_id: str | None = None) -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []} if role == "assistant" \
        else {"type": "input_text", "text": text}
    return {"id": item_id or new_id("msg"), "type": "message", "role": role, "status": "completed", "content": [part]}


def _item(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"{where} must be an object", param=where)
    kind = raw.get("type", "message")
    if kind == "message":
        return _message(raw, where)
    if kind == "function_call":
        for name in ("call_id", "name", "arguments"):
            if not isinstance(raw.get(name), str):
                raise InvalidRequest(f"{where}.{name} must be a string", param=f"{where}.{name}")
        try:
            json.loads(raw["arguments"] or "{}")
        except ValueError as exc:
            raise InvalidRequest(f"{where}.arguments is not valid JSON: {exc}", param=f"{where}.arguments") from exc
        return {"id": str(raw.get("id") or new_id("fc")), "type": kind, "call_id": raw["call_id"],
                "name": raw["name"], "arguments": raw["arguments"], "status": "completed"}
    if kind == "function_call_output":
        if not isinstance(raw.get("call_id"), str):
            raise InvalidRequest(f"{where}.call_id must be a string", param=f"{where}.call_id")
        output = raw.get("output")
        text = output if isinstance(output, str) else _parts_text(output, f"{where}.output")
        return {"id": str(raw.get("id") or new_id("fco")), "type": kind, "call_id": raw["call_id"],
                "output": text, "status": "completed"}
    if kind == "reasoning":
        return {"type": "reasoning", "id": str(raw.get("id") or new_id("rs")), "summary": []}
    raise InvalidRequest(f"{where}.type '{str(kind)[:40]}' is not supported (message, function_call and "
                         "function_call_output are)", param=f"{where}.type")


def _message(raw: dict[str, Any], where: str) -> dict[str, Any]:
    role = raw.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequest(f"{where}.role must be user, assistant, system or developer", param=f"{where}.role")
    content = raw.get("content")
    text = content if isinstance(content, str) else _parts_text(content, f"{where}.content")
    return message_item(role, text, str(raw["id"]) if raw.get("id") else None)


def _parts_text(parts: Any, where: str) -> str:
    if not isinstance(parts, list):
        raise InvalidRequest(f"{where} must be a string or a list of parts", param=where)
    out = []
    for i, part in enumerate(parts):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS:
            raise InvalidRequest(f"{where}.{i}: only text parts are supported, not '{str(kind)[:40]}'",
                                 param=f"{where}.{i}.type")
        text = part.get("text", part.get("refusal", ""))
        if not isinstance(text, str):
            raise InvalidRequest(f"{where}.{i}.text must be a string", param=f"{where}.{i}.text")
        out.append(text)
    return "".join(out)


def items_to_messages(items: list[dict[str, Any]], start: int = 0) -> list[dict[str, Any]]:
    """Template messages: function calls join the assistant turn before them, outputs become
    ``tool`` messages; reasoning items are dropped (this server makes none)."""
    messages: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for index, item in enumerate(items):
        if item["type"] == "message":
            role = "system" if item["role"] == "developer" else item["role"]
            messages.append({"role": role, "content": "".join(p.get("text", "") for p in item["content"])})
        elif item["type"] == "function_call":
            call = {"id": item["call_id"], "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]}}
            names[item["call_id"]] = item["name"]
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif item["type"] == "function_call_output":
            if item["call_id"] not in names:
                raise InvalidRequest(f"no function call found for the function_call_output with call_id "
                                     f"'{item['call_id'][:64]}'", param=f"input.{max(index - start, 0)}.call_id")
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "name": names[item["call_id"]],
                             "content": item["output"]})
    return messages
