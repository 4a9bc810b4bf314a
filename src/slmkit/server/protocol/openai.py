"""OpenAI request and response models, and their conversion to engine terms."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationInfo, field_validator

from slmkit.errors import InvalidRequest
from slmkit.server.protocol.fields import (
    INT32_MAX,
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
from slmkit.server.usecases.calls import ChatCall, CompletionCall, EmbedCall, GenOptions, OutputFormat, Params


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

    @field_validator("stream_options")
    @classmethod
    def _streamed_only(cls, value: StreamOptions | None, info: ValidationInfo) -> StreamOptions | None:
        if value is not None and info.data.get("stream") is not True:
            raise ValueError("stream_options may only be set when stream is true")
        return value

    def options(self, max_tokens: int | None, logprobs: int | None) -> GenOptions:
        """The sampling fields in neutral terms (unset fields stay None: profile defaults apply)."""
        bias = {int(k): v for k, v in self.logit_bias.items()} if self.logit_bias else None
        return GenOptions.of(max_tokens=max_tokens, temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                             min_p=self.min_p, typical_p=self.typical_p, repeat_penalty=self.repeat_penalty,
                             presence_penalty=self.presence_penalty, frequency_penalty=self.frequency_penalty,
                             seed=self.seed, stop=self.stop, logit_bias=bias, ignore_eos=self.ignore_eos, n=self.n,
                             logprobs=logprobs, speculative=self.speculative)

    def output_format(self) -> OutputFormat | None:
        fmt = self.response_format
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return OutputFormat("json_object")
        if fmt.json_schema is None:
            raise InvalidRequest("response_format of type json_schema needs a json_schema", param="response_format")
        return OutputFormat("json_schema", fmt.json_schema.schema_, "response_format.json_schema.schema")

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

    @field_validator("tools")
    @classmethod
    def _some_tools(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        if value is not None and not value:
            raise ValueError("tools must list at least one tool (leave the field out for none)")
        return value

    def to_call(self) -> ChatCall:
        limit = self.max_completion_tokens or self.max_tokens
        return ChatCall(model=self.model, messages=[m.to_template() for m in self.messages],
                        options=self.options(limit, (self.top_logprobs or 0) if self.logprobs else None),
                        tools=self.tools, tool_choice=self.tool_choice, parallel_tool_calls=self.parallel_tool_calls,
                        format=self.output_format(),
                        params=Params(max_tokens="max_completion_tokens" if self.max_completion_tokens
                                      else "max_tokens"))


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[TokenId] | list[TokenIds]
    echo: bool = False
    suffix: str | None = None
    # OpenAI's default, 16, applies below the served profile's; 0 with echo scores the prompt only
    max_tokens: Annotated[StrictInt, Field(ge=0, le=INT32_MAX)] | None = None
    logprobs: TopLogprobs | None = None

    def to_call(self) -> CompletionCall:
        if self.suffix:
            raise InvalidRequest("suffix (fill-in-the-middle) is not supported", param="suffix")
        prompt = self.prompt
        items: list[Any] = [prompt] if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)) \
            else list(prompt)
        return CompletionCall(model=self.model, prompts=items, options=self.options(self.max_tokens, self.logprobs),
                              format=self.output_format(), echo=self.echo, default_max_tokens=16)


# -- responses ----------------------------------------------------------------------
class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionUsage(BaseModel):
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
    message: AssistantToolMessage | AssistantMessage  # tool_calls only on messages that call tools
    finish_reason: str
    logprobs: dict[str, Any] | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChatChoice]
    usage: CompletionUsage


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
    usage: CompletionUsage | None = None


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

    def to_call(self) -> EmbedCall:
        value = self.input
        if isinstance(value, str) or (value and isinstance(value[0], int)):
            items: list[Any] = [value]
        else:
            items = list(value)
        return EmbedCall(model=self.model, inputs=items, truncate=False, dimensions=self.dimensions)


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
