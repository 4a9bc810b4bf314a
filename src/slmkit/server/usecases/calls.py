"""The neutral calls every door turns its body into: ``ChatCall``, ``CompletionCall``,
``EmbedCall``. They hold what was asked in engine-neutral terms and nothing about a wire
format, except the names the door uses for its parameters (so a 400 names the right field)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from slmkit.engine.base import SamplingParams
from slmkit.server.context import Principal

# Modelfile PARAMETER names -> GenOptions fields (the ones a profile may set as defaults)
PROFILE_FIELDS = {
    "temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "typical_p": "typical_p",
    "repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n", "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty", "seed": "seed", "stop": "stop", "num_predict": "max_tokens",
}
_SAMPLING = ("temperature", "top_k", "top_p", "min_p", "typical_p", "repeat_penalty", "repeat_last_n",
             "presence_penalty", "frequency_penalty", "seed", "ignore_eos", "speculative")


@dataclass(frozen=True)
class GenOptions:
    """Generation options. ``None`` means "not set by the caller": the served profile's
    PARAMETER applies, then the door's default, then the engine's."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repeat_penalty: float | None = None
    repeat_last_n: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    logit_bias: dict[int, float] | None = None
    ignore_eos: bool | None = None
    speculative: bool | None = None  # prompt-lookup drafts for this request (None: the server's setting)
    num_ctx: int | None = None  # Ollama: shrink (never grow) the slot's context for this request
    n: int = 1
    logprobs: int | None = None  # alternatives per token (0: only the chosen one); None: off

    @classmethod
    def of(cls, **values: Any) -> GenOptions:
        """Options from keyword values, dropping ``None`` and names this class lacks."""
        names = {f.name for f in fields(cls)}
        picked = {k: v for k, v in values.items() if k in names and v is not None}
        if isinstance(picked.get("stop"), str):
            picked["stop"] = (picked["stop"],)
        elif "stop" in picked:
            picked["stop"] = tuple(picked["stop"])
        return cls(**picked)

    def with_profile(self, parameters: dict[str, Any]) -> GenOptions:
        """Unset fields filled from a Modelfile's PARAMETERs."""
        updates: dict[str, Any] = {}
        for key, value in parameters.items():
            name = PROFILE_FIELDS.get(key)
            if name is None or getattr(self, name) is not None:
                continue
            if name == "stop":
                value = tuple(value) if isinstance(value, list) else (str(value),)
            elif name == "max_tokens" and isinstance(value, int) and value < 0:
                continue  # -1 / -2: to the context's end, the default anyway
            updates[name] = value
        return replace(self, **updates) if updates else self

    def sampling(self, grammar: str | None) -> SamplingParams:
        chosen = {k: getattr(self, k) for k in _SAMPLING if getattr(self, k) is not None}
        return replace(SamplingParams(), **chosen, logit_bias=dict(self.logit_bias or {}), grammar=grammar)


@dataclass(frozen=True)
class OutputFormat:
    """Structured output: any JSON object, or JSON matching ``schema``. ``param`` is the
    door's name for it (``response_format``, ``format``, ``text.format``)."""

    kind: Literal["json_object", "json_schema"]
    schema: dict[str, Any] | None = None
    param: str = "response_format"


@dataclass(frozen=True)
class Params:
    """How the door names its fields, for errors: 400 "messages ..." or "prompt ..."."""

    input: str = "messages"
    tools: str = "tools"
    tool_choice: str = "tool_choice"
    tool_schema: str = "function.parameters"  # a tool's JSON schema, below tools.N
    max_tokens: str = "max_tokens"
    stop: str = "stop"
    think: str = "think"


@dataclass
class ChatCall:
    """A conversation to answer. ``messages`` are template-shaped dicts (``role``,
    ``content``, and ``tool_calls`` / ``tool_call_id`` / ``name`` where they apply)."""

    model: str | None
    messages: list[dict[str, Any]]
    options: GenOptions = field(default_factory=GenOptions)
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    format: OutputFormat | None = None
    keep_alive: float | None = None
    context: list[int] | None = None  # tokens before the prompt (Ollama's generate ``context``)
    truncate: bool | None = None  # drop the oldest turns, then the last one's start, to fit (None: the setting)
    think: bool = False  # a reasoning trace was asked for (400 on models without one)
    continue_final: bool = False  # a final assistant message is continued, not closed (Anthropic's prefill)
    principal: Principal | None = None  # the caller; None: the current request's
    params: Params = field(default_factory=Params)


@dataclass
class CompletionCall:
    """Plain-text continuation of one or more prompts (text or token ids), no chat template."""

    model: str | None
    prompts: list[str | list[int]]
    options: GenOptions = field(default_factory=GenOptions)
    format: OutputFormat | None = None
    keep_alive: float | None = None
    echo: bool = False
    parse_special: bool = False  # raw prompts with template markup (Ollama's raw mode)
    context: list[int] | None = None
    truncate: bool | None = None  # keep each prompt's end when it does not fit (None: the server's setting)
    think: bool = False
    default_max_tokens: int | None = None  # the door's default when neither call nor profile sets one
    principal: Principal | None = None
    params: Params = field(default_factory=lambda: Params(input="prompt"))


@dataclass
class EmbedCall:
    """Texts or token-id lists to embed as unit-length vectors."""

    model: str | None
    inputs: list[str | list[int]]
    truncate: bool = True
    dimensions: int | None = None  # shorten (and renormalize) each vector to this many dimensions
    keep_alive: float | None = None
    empty_ok: bool = False  # no inputs: load the model and answer no vectors (Ollama) instead of 400
    principal: Principal | None = None
    param: str = "input"
