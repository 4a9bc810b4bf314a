"""Anthropic Messages API request models (``/v1/messages``) and their conversion to a ``ChatCall``.

Content blocks become template-shaped messages: ``text`` blocks join into the content,
``tool_use`` blocks of an assistant turn become its ``tool_calls``, ``tool_result`` blocks of
a user turn become ``tool`` messages (before the turn's own text, as Anthropic orders them).
``tools`` (``input_schema``) and ``tool_choice`` (auto / any / tool / none) become the
OpenAI-shaped tools the use-case layer plans; every name a 400 carries is this API's own."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictInt, Tag

from slmkit.errors import InvalidRequest
from slmkit.server.protocol.fields import Count, RequestBody, TopK, Unit
from slmkit.server.usecases.calls import ChatCall, GenOptions, OutputFormat, Params

Temperature = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]  # Anthropic's range
PARAMS = Params(input="messages", tools="tools", tool_choice="tool_choice", tool_schema="input_schema",
                max_tokens="max_tokens", stop="stop_sequences", think="thinking")


class TextBlock(BaseModel):
    model_config = ConfigDict(extra="allow")  # cache_control, citations: accepted, not used
    type: Literal["text"]
    text: str


class ToolUseBlock(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["tool_use"]
    id: str
    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["tool_result"]
    tool_use_id: str
    content: list[TextBlock] | str = ""
    is_error: bool = False

    def text(self) -> str:
        body = self.content if isinstance(self.content, str) else "".join(b.text for b in self.content)
        return f"Error: {body}" if self.is_error else body


class OtherBlock(BaseModel):
    """Any other block type (image, document, thinking ...): refused with its place named."""

    model_config = ConfigDict(extra="allow")
    type: str


_KINDS = {"text": "TextBlock", "tool_use": "ToolUseBlock", "tool_result": "ToolResultBlock"}


def _block_kind(value: Any) -> str:
    """The block's model by its ``type`` (tags are capitalised so a 400 names ``messages.0.content.1.text``)."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return _KINDS.get(kind, "OtherBlock") if isinstance(kind, str) else "OtherBlock"


Block = Annotated[Annotated[TextBlock, Tag("TextBlock")] | Annotated[ToolUseBlock, Tag("ToolUseBlock")]
                  | Annotated[ToolResultBlock, Tag("ToolResultBlock")] | Annotated[OtherBlock, Tag("OtherBlock")],
                  Discriminator(_block_kind)]


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: list[Block] | str

    def to_template(self, where: str) -> list[dict[str, Any]]:
        """The template-shaped messages of this turn (``where``: its place, for errors)."""
        if isinstance(self.content, str):
            return [{"role": self.role, "content": self.content}]
        text, calls, results = [], [], []
        for i, block in enumerate(self.content):
            place = f"{where}.content.{i}"
            if isinstance(block, TextBlock):
                text.append(block.text)
            elif isinstance(block, ToolUseBlock) and self.role == "assistant":
                calls.append({"id": block.id, "type": "function",
                              "function": {"name": block.name, "arguments": block.input}})
            elif isinstance(block, ToolResultBlock) and self.role == "user":
                results.append({"role": "tool", "tool_call_id": block.tool_use_id, "content": block.text()})
            else:
                raise InvalidRequest(f"Invalid value for '{place}.type': '{block.type}' blocks are not supported in "
                                     f"{self.role} messages here", param=f"{place}.type")
        out: list[dict[str, Any]] = list(results)
        if text or calls or not results:
            turn: dict[str, Any] = {"role": self.role, "content": "".join(text)}
            if calls:
                turn["tool_calls"] = calls
            out.append(turn)
        return out


class Tool(BaseModel):
    model_config = ConfigDict(extra="allow")  # cache_control, type: "custom"
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    input_schema: dict[str, Any]
    type: Literal["custom"] | None = None

    def as_openai(self) -> dict[str, Any]:
        return {"type": "function", "function": {"name": self.name, "description": self.description or "",
                                                 "parameters": self.input_schema}}


class ToolChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    def neutral(self) -> str | dict[str, Any]:
        if self.type == "tool":
            if not self.name:
                raise InvalidRequest("tool_choice of type 'tool' needs a name", param="tool_choice.name")
            return {"type": "function", "function": {"name": self.name}}
        return {"auto": "auto", "any": "required", "none": "none"}[self.type]


class JsonOutputFormat(BaseModel):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    """``output_config``: ``format`` (structured output) is honoured; ``effort`` is accepted."""

    model_config = ConfigDict(extra="ignore")
    format: JsonOutputFormat | None = None


class Thinking(BaseModel):
    """``thinking``: ``enabled`` asks for a reasoning trace (a 400 here, as no served model
    separates one yet); ``disabled`` and ``adaptive`` (the model decides) answer plainly."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["enabled", "disabled", "adaptive"]


class Metadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: str | None = None


class Conversation(RequestBody):
    """What ``/v1/messages`` and ``/v1/messages/count_tokens`` share: the conversation and tools."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[Message] = Field(min_length=1)
    system: list[TextBlock] | str | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None

    def template_messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        system = self.system if isinstance(self.system, str) or self.system is None \
            else "\n\n".join(b.text for b in self.system)
        if system:
            out.append({"role": "system", "content": system})
        for i, message in enumerate(self.messages):
            out += message.to_template(f"messages.{i}")
        return out

    def to_call(self) -> ChatCall:
        choice = self.tool_choice
        return ChatCall(model=self.model, messages=self.template_messages(),
                        tools=[t.as_openai() for t in self.tools] if self.tools is not None else None,
                        tool_choice=choice.neutral() if choice is not None else None,
                        parallel_tool_calls=None if choice is None or choice.disable_parallel_tool_use is None
                        else not choice.disable_parallel_tool_use, params=PARAMS, continue_final=self.prefills)

    @property
    def prefills(self) -> bool:
        """A final assistant turn of text is a prefill: the answer continues it, as Anthropic does."""
        last = self.messages[-1]
        return last.role == "assistant" and (isinstance(last.content, str)
                                             or all(isinstance(b, TextBlock) for b in last.content))


class MessagesRequest(Conversation):
    max_tokens: Count  # required, as Anthropic has it
    stop_sequences: Annotated[list[str], Field(max_length=1024)] | None = None
    temperature: Temperature | None = None
    top_p: Unit | None = None
    top_k: TopK | None = None
    metadata: Metadata | None = None
    stream: bool = False
    output_config: OutputConfig | None = None
    thinking: Thinking | None = None
    # slmkit's extensions, as on the other doors
    seed: Annotated[StrictInt, Field(ge=-(2**63), le=2**64 - 1)] | None = None

    def to_call(self) -> ChatCall:
        call = super().to_call()
        call.think = self.thinking is not None and self.thinking.type == "enabled"
        call.options = GenOptions.of(max_tokens=self.max_tokens, temperature=self.temperature, top_p=self.top_p,
                                     top_k=self.top_k, stop=self.stop_sequences, seed=self.seed)
        fmt = self.output_config.format if self.output_config is not None else None
        if fmt is not None:
            call.format = OutputFormat("json_schema", fmt.schema_, "output_config.format.schema")
        return call


class CountTokensRequest(Conversation):
    """``/v1/messages/count_tokens``: the conversation without generation settings."""


class TokenCount(BaseModel):
    input_tokens: int


# -- responses ----------------------------------------------------------------------
class Usage(BaseModel):
    input_tokens: int  # prompt tokens not read from the cache
    output_tokens: int
    cache_read_input_tokens: int = 0  # prompt tokens reused from a slot's cache (the common prefix)
    cache_creation_input_tokens: int = 0


class TextContent(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseContent(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class MessageResponse(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextContent | ToolUseContent]
    stop_reason: Literal["end_turn", "max_tokens", "stop_sequence", "tool_use"] | None
    stop_sequence: str | None
    usage: Usage
