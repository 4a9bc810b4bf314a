"""Keyword arguments of the Python API turned into the server's validated request models, so
both check their input the same way and fail with the same errors."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

import jsonschema
from pydantic import BaseModel, ValidationError

from slmkit.errors import InvalidRequest, OutputInvalid
from slmkit.server.protocol.openai import ChatCompletionRequest, CompletionRequest

Messages = str | Sequence[Mapping[str, Any]]
ResponseFormat = type[BaseModel] | Mapping[str, Any]


class GenerateKwargs(TypedDict, total=False):
    """Options every generating call takes (as in the OpenAI API; ``None`` = the default)."""

    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    top_k: int | None
    min_p: float | None
    typical_p: float | None
    repeat_penalty: float | None
    presence_penalty: float | None
    frequency_penalty: float | None
    seed: int | None
    stop: str | list[str] | None
    logit_bias: Mapping[int, float] | None
    n: int
    logprobs: int | None  # alternatives reported per token (0: only the chosen token); None: off
    response_format: ResponseFormat | None
    ignore_eos: bool | None  # generate exactly max_tokens (benchmarks)
    speculative: bool | None  # False: no prompt-lookup drafts for this call (the output is the same either way)


class ChatKwargs(GenerateKwargs, total=False):
    """Chat calls also take tools (OpenAI or Ollama tool definitions)."""

    tools: Sequence[Mapping[str, Any]] | None
    tool_choice: Literal["none", "auto", "required"] | Mapping[str, Any] | None
    parallel_tool_calls: bool | None


_GENERATE_KEYS = frozenset(GenerateKwargs.__annotations__)
_CHAT_KEYS = _GENERATE_KEYS | {"tools", "tool_choice", "parallel_tool_calls"}


@dataclass(frozen=True)
class Structure:
    """Structured output a call asked for: the OpenAI ``response_format`` it becomes, and how
    to parse and validate the text the model writes."""

    response_format: dict[str, Any]
    schema: dict[str, Any] | None = None
    model_class: type[BaseModel] | None = None

    @classmethod
    def of(cls, value: ResponseFormat | None) -> Structure | None:
        """A pydantic model class, a JSON schema, or an OpenAI ``response_format`` dict."""
        if value is None:
            return None
        if isinstance(value, type) and issubclass(value, BaseModel):
            schema = value.model_json_schema()
            return cls(_schema_format(value.__name__, schema), schema, value)
        if not isinstance(value, Mapping):
            raise InvalidRequest("response_format must be a pydantic model class, a JSON schema or an OpenAI "
                                 "response_format", param="response_format")
        if value.get("type") == "json_object" and "properties" not in value:
            return cls({"type": "json_object"})
        if value.get("type") == "text" and "properties" not in value:
            return None
        if value.get("type") == "json_schema" and isinstance(value.get("json_schema"), Mapping):
            inner = dict(value["json_schema"])
            return cls({"type": "json_schema", "json_schema": inner}, dict(inner.get("schema") or {}))
        schema = dict(value)
        return cls(_schema_format(str(schema.get("title") or "response"), schema), schema)

    def parse(self, text: str, finish_reason: str) -> Any:
        """The validated object the text holds; ``OutputInvalid`` when it does not parse or validate."""
        hint = " (the output was cut at max_tokens; raise it)" if finish_reason == "length" else ""
        if self.model_class is not None:
            try:
                return self.model_class.model_validate_json(text)
            except ValidationError as exc:
                raise OutputInvalid(f"the model's output is not a valid {self.model_class.__name__}{hint}: "
                                    f"{exc.errors()[0]['msg']}") from exc
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise OutputInvalid(f"the model's output is not JSON{hint}: {exc}") from exc
        if self.schema:
            try:
                jsonschema.validate(value, self.schema)
            except jsonschema.ValidationError as exc:
                raise OutputInvalid(f"the model's output does not match the schema{hint}: {exc.message}") from exc
        return value


def _schema_format(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)[:64] or "response"
    return {"type": "json_schema", "json_schema": {"name": safe, "schema": schema, "strict": True}}


def chat_body(messages: Messages, options: Mapping[str, Any]) -> tuple[ChatCompletionRequest, Structure | None]:
    """The validated chat request for ``messages`` (a string is one user message)."""
    fields, structure = _fields(options, _CHAT_KEYS)
    if isinstance(messages, str):
        fields["messages"] = [{"role": "user", "content": messages}]
    else:
        fields["messages"] = [dict(m) for m in messages]
    if fields.get("logprobs") is not None:
        fields["top_logprobs"], fields["logprobs"] = fields["logprobs"], True
    for key in ("tools", "tool_choice"):
        if fields.get(key) is not None and not isinstance(fields[key], str):
            fields[key] = json.loads(json.dumps(fields[key]))  # plain dicts and lists
    return _validate(ChatCompletionRequest, fields), structure


def completion_body(prompt: str, options: Mapping[str, Any]) -> tuple[CompletionRequest, Structure | None]:
    """The validated text-completion request for ``prompt`` (no chat template)."""
    if not isinstance(prompt, str):
        raise InvalidRequest("prompt must be a string", param="prompt")
    fields, structure = _fields(options, _GENERATE_KEYS)
    fields["prompt"] = prompt
    fields.setdefault("max_tokens", None)
    return _validate(CompletionRequest, fields), structure


def _fields(options: Mapping[str, Any], allowed: frozenset[str]) -> tuple[dict[str, Any], Structure | None]:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown option {unknown[0]!r}; the options are: {', '.join(sorted(allowed))}",
                             param=unknown[0])
    fields = {k: v for k, v in options.items() if v is not None}
    structure = Structure.of(fields.pop("response_format", None))
    if structure is not None:
        fields["response_format"] = structure.response_format
    if "logit_bias" in fields:
        fields["logit_bias"] = {str(k): v for k, v in fields["logit_bias"].items()}
    return fields, structure


def _validate(model: type[Any], fields: dict[str, Any]) -> Any:
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        param = ".".join(str(p) for p in error["loc"]) or None
        raise InvalidRequest(f"{param}: {error['msg']}" if param else str(error["msg"]), param=param) from None
