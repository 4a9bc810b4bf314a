"""Ollama request and response models (``/api/...``), and their conversion to engine terms."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slmkit.errors import InvalidRequest
from slmkit.server.protocol.fields import (
    Count,
    NumPredict,
    OllamaPenalty,
    OllamaTemperature,
    RepeatLastN,
    RepeatPenalty,
    RequestBody,
    Seed,
    TokenId,
    TopK,
    Unit,
    UnitOpen,
)
from slmkit.server.usecases.calls import ChatCall, CompletionCall, EmbedCall, GenOptions, OutputFormat, Params

KeepAlive = str | Annotated[float, Field(strict=True, allow_inf_nan=False)]
MAX_KEEP_ALIVE_S = 100 * 365 * 24 * 3600.0  # longer counts as forever
_DURATION = re.compile(r"(-?\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def parse_keep_alive(value: str | int | float | None) -> float | None:
    """Seconds (negative: forever) from Ollama's keep_alive: a number of seconds or a Go
    duration such as "5m", "1h30m", "0", "-1". More than a hundred years counts as forever."""
    if value is None:
        return None
    seconds = float(value) if isinstance(value, int | float) else _duration(value)
    if not math.isfinite(seconds):
        raise InvalidRequest("keep_alive must be a finite duration", param="keep_alive")
    return -1.0 if seconds > MAX_KEEP_ALIVE_S else seconds


def _duration(value: str) -> float:
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise InvalidRequest(f"keep_alive: invalid duration {value[:40]!r} (use e.g. \"5m\", \"30s\", 0 or -1)",
                             param="keep_alive")
    return sum(float(n) * _UNITS[u] for n, u in parts)


class NullIsDefault(BaseModel):
    """JSON ``null`` means "not given", as Ollama's decoder reads it: the field keeps its default
    (``stream: null`` streams, ``options: null`` is no options, a message's ``content: null`` is "")."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_default(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


class Options(NullIsDefault):
    """Ollama's runtime options. Unknown options are ignored, as Ollama does; known ones are
    type-checked (400 naming ``options.<name>``)."""

    model_config = ConfigDict(extra="ignore")

    num_predict: NumPredict | None = None
    num_ctx: Count | None = None
    temperature: OllamaTemperature | None = None
    top_k: TopK | None = None
    top_p: Unit | None = None
    min_p: Unit | None = None
    typical_p: UnitOpen | None = None
    repeat_penalty: RepeatPenalty | None = None
    repeat_last_n: RepeatLastN | None = None
    presence_penalty: OllamaPenalty | None = None
    frequency_penalty: OllamaPenalty | None = None
    seed: Seed | None = None
    stop: list[str] | None = None
    speculative: bool | None = None  # slmkit's extension: false turns prompt-lookup drafts off

    @field_validator("stop", mode="before")
    @classmethod
    def _one_stop(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def to_options(self) -> GenOptions:
        return GenOptions.of(max_tokens=self.max_tokens(), temperature=self.temperature, top_k=self.top_k,
                             top_p=self.top_p, min_p=self.min_p, typical_p=self.typical_p,
                             repeat_penalty=self.repeat_penalty, repeat_last_n=self.repeat_last_n,
                             presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
                             seed=self.seed, stop=self.stop, num_ctx=self.num_ctx,
                             speculative=self.speculative)

    def max_tokens(self) -> int | None:
        """num_predict: -1 (infinite) and -2 (fill the context) both run to the context's end."""
        if self.num_predict is None or self.num_predict < 0:
            return None
        if self.num_predict == 0:
            raise InvalidRequest("options.num_predict must not be 0", param="options.num_predict")
        return self.num_predict


class OllamaRequest(NullIsDefault, RequestBody):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    stream: bool = True
    format: str | dict[str, Any] | None = None
    options: Options = Field(default_factory=Options)
    keep_alive: KeepAlive | None = None
    think: bool | Literal["low", "medium", "high"] | None = None
    truncate: bool = True  # over-long input: drop the oldest messages / keep the prompt's end; false: 400
    shift: bool = True  # accepted; the engine never shifts: an answer ends at the context's end ("length")

    def output_format(self) -> OutputFormat | None:
        if self.format in (None, ""):
            return None
        if self.format == "json":
            return OutputFormat("json_object", param="format")
        if isinstance(self.format, dict):
            return OutputFormat("json_schema", self.format, param="format")
        raise InvalidRequest("format must be \"json\" or a JSON schema object", param="format")

    def keep_alive_s(self) -> float | None:
        return parse_keep_alive(self.keep_alive)


class GenerateRequest(OllamaRequest):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool = False
    images: list[str] | None = None
    context: list[TokenId] | None = None

    def to_call(self) -> ChatCall | CompletionCall:
        """A chat of ``system`` and ``prompt`` (or, ``raw``, the prompt as it is) after ``context``."""
        if self.images:
            raise InvalidRequest(f"model '{self.model}' does not support images: it is a text model", param="images")
        if self.suffix:
            raise InvalidRequest("suffix (fill-in-the-middle) is not supported", param="suffix")
        if self.template:
            raise InvalidRequest("template overrides are not supported: the model's own chat template is used",
                                 param="template")
        common: dict[str, Any] = {"model": self.model, "options": self.options.to_options(),
                                  "format": self.output_format(), "keep_alive": self.keep_alive_s(),
                                  "context": self.context or None, "truncate": self.truncate,
                                  "think": bool(self.think)}
        if self.raw:
            return CompletionCall(prompts=[self.prompt], parse_special=True, **common)
        system = [{"role": "system", "content": self.system}] if self.system else []
        return ChatCall(messages=[*system, {"role": "user", "content": self.prompt}],
                        params=Params(input="prompt", max_tokens="options.num_predict"), **common)


class ToolCallFunction(NullIsDefault):
    model_config = ConfigDict(extra="allow")
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)
    index: int | None = None


class ToolCallIn(NullIsDefault):
    model_config = ConfigDict(extra="allow")
    function: ToolCallFunction


class Message(NullIsDefault):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    images: list[str] | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_name: str | None = None
    thinking: str | None = None

    def to_template(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [{"type": "function", "function": {"name": c.function.name,
                                                                     "arguments": c.function.arguments}}
                                 for c in self.tool_calls]
        if self.tool_name:
            out["name"] = self.tool_name
        return out


class ChatRequest(OllamaRequest):
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None  # extension

    def to_call(self) -> ChatCall:
        if any(m.images for m in self.messages):
            raise InvalidRequest(f"model '{self.model}' does not support images: it is a text model",
                                 param="messages.images")
        tools = self.tools or None
        if tools is None and self.tool_choice not in (None, "none", "auto"):
            raise InvalidRequest("tool_choice needs tools", param="tool_choice")
        return ChatCall(model=self.model, messages=[m.to_template() for m in self.messages],
                        options=self.options.to_options(), tools=tools,
                        tool_choice=self.tool_choice if tools else None, format=self.output_format(),
                        keep_alive=self.keep_alive_s(), truncate=self.truncate, think=bool(self.think),
                        params=Params(max_tokens="options.num_predict"))


class EmbedRequest(NullIsDefault, RequestBody):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    input: str | list[str]
    truncate: bool = True
    options: Options = Field(default_factory=Options)
    keep_alive: KeepAlive | None = None
    dimensions: Count | None = None

    def to_call(self) -> EmbedCall:
        """An empty input (``""`` or ``[]``) loads the model and answers no vectors, as Ollama does."""
        inputs: list[Any] = list(self.input) if isinstance(self.input, list) else [self.input] if self.input else []
        return EmbedCall(model=self.model, inputs=inputs, truncate=self.truncate, dimensions=self.dimensions,
                         keep_alive=parse_keep_alive(self.keep_alive), empty_ok=True)


class EmbeddingsRequest(NullIsDefault, RequestBody):
    """The legacy single-input route."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    prompt: str
    options: Options = Field(default_factory=Options)
    keep_alive: KeepAlive | None = None

    def to_call(self) -> EmbedCall:
        return EmbedCall(model=self.model, inputs=[self.prompt], keep_alive=parse_keep_alive(self.keep_alive),
                         param="prompt")


# -- responses ----------------------------------------------------------------------
class Details(BaseModel):
    parent_model: str = ""
    format: str = "gguf"
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class ModelEntry(BaseModel):
    name: str
    model: str
    modified_at: str
    size: int
    digest: str
    details: Details


class TagsResponse(BaseModel):
    models: list[ModelEntry]


class RunningEntry(BaseModel):
    name: str
    model: str
    size: int
    digest: str
    details: Details
    expires_at: str
    size_vram: int = 0
    context_length: int
    slots: int | None = None  # slmkit: sequences decoded together (not in Ollama)


class PsResponse(BaseModel):
    models: list[RunningEntry]


class EmbedResponse(BaseModel):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class EmbeddingsResponse(BaseModel):
    embedding: list[float]
