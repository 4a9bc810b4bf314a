"""OpenAI request and response models, and their conversion to engine terms."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from slmkit.engine.base import SamplingParams
from slmkit.engine.llamacpp.grammar import json_object_grammar, json_schema_grammar
from slmkit.errors import InvalidRequest
from slmkit.server.protocol.fields import (
    Count,
    Penalty,
    RepeatPenalty,
    RequestBody,
    Seed,
    Temperature,
    TokenId,
    TokenIds,
    TopK,
    TopLogprobs,
    Unit,
    UnitOpen,
    check_logit_bias,
)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")

    def to_template(self) -> dict[str, Any]:
        role = "system" if self.role == "developer" else self.role
        out: dict[str, Any] = {"role": role, "content": self.text()}
        for key in ("name", "tool_calls", "tool_call_id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


class StreamOptions(BaseModel):
    include_usage: bool = False


class JsonSchemaFormat(BaseModel):
    name: str = "response"
    description: str | None = None
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class SamplingFields(RequestBody):
    """Sampling fields shared by chat and text completions (plus the common extensions)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: Count | None = None
    temperature: Temperature | None = None
    top_p: Unit | None = None
    top_k: TopK | None = None
    min_p: Unit | None = None
    typical_p: UnitOpen | None = None
    repeat_penalty: RepeatPenalty | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    seed: Seed | None = None
    stop: str | list[str] | None = None
    n: Annotated[StrictInt, Field(ge=1, le=128)] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, float] | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    ignore_eos: bool | None = None  # vLLM's and llama-server's extension: generate max_tokens whatever comes
    speculative: bool | None = None  # slmkit's extension: false turns prompt-lookup drafts off for this request

    @field_validator("logit_bias")
    @classmethod
    def _bias_keys(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return check_logit_bias(value)

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def sampling(self) -> SamplingParams:
        defaults = SamplingParams()
        values = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "typical_p": self.typical_p,
            "repeat_penalty": self.repeat_penalty,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "seed": self.seed,
            "ignore_eos": self.ignore_eos,
            "speculative": self.speculative,
        }
        chosen = {k: v for k, v in values.items() if v is not None}
        bias = {int(k): v for k, v in (self.logit_bias or {}).items()}
        return SamplingParams(**{**defaults.__dict__, **chosen, "logit_bias": bias, "grammar": self.grammar()})

    def grammar(self) -> str | None:
        """The GBNF grammar that ``response_format`` asks for, if any."""
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return json_object_grammar()
        if fmt.json_schema is None:
            raise InvalidRequest("response_format of type json_schema needs a json_schema", param="response_format")
        return json_schema_grammar(fmt.json_schema.schema_, "response_format.json_schema.schema")

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: Count | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool = False
    top_logprobs: TopLogprobs | None = None

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    def logprob_count(self) -> int | None:
        """How many alternatives to report per token; None when logprobs are off."""
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[TokenId] | list[TokenIds]
    echo: bool = False
    suffix: str | None = None
    max_tokens: Count | None = 16
    logprobs: TopLogprobs | None = None

    def token_limit(self) -> int | None:
        return self.max_tokens

    def logprob_count(self) -> int | None:
        return self.logprobs


# -- responses ----------------------------------------------------------------------
class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)


class FunctionCall(BaseModel):
    name: str
    arguments: str  # a JSON object, as text


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None


class AssistantToolMessage(AssistantMessage):
    """An assistant message that calls tools (``tool_calls`` is left out of messages without calls)."""

    tool_calls: list[ToolCallOut]


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: str
    logprobs: dict[str, Any] | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: Usage


class ToolChatChoice(ChatChoice):
    """A choice whose message may call tools (serialized with ``tool_calls`` only when it does)."""

    message: AssistantToolMessage | AssistantMessage


class ToolChatCompletionResponse(ChatCompletionResponse):
    choices: list[ToolChatChoice]  # type: ignore[assignment]


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None
    logprobs: dict[str, Any] | None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[CompletionChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "slmkit"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EmbeddingRequest(RequestBody):
    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    input: str | list[str] | list[TokenId] | list[TokenIds]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Count | None = None
    user: str | None = None

    def inputs(self) -> list[str] | list[list[int]]:
        value = self.input
        if isinstance(value, str):
            return [value]
        if value and all(isinstance(t, int) for t in value):
            return [[int(t) for t in value]]  # type: ignore[arg-type]
        return [v if isinstance(v, str) else list(v) for v in value]  # type: ignore[arg-type, return-value]


class EmbeddingData(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingResponse(BaseModel):
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


class ErrorBody(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody
