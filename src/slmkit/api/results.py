"""What the Python API returns: completions, stream chunks and token counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from slmkit.engine.base import TokenLogprob
from slmkit.server.generation import TokenCounts
from slmkit.server.tools import ToolCall
from slmkit.server.usecases.run import Finish, RunResult

if TYPE_CHECKING:
    from slmkit.api.requests import Structure

__all__ = ["Choice", "Chunk", "Completion", "ToolCall", "Usage"]


@dataclass(frozen=True)
class Usage:
    """Token counts of one call. The prompt counts once however many choices read it."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens reused from a slot's cache (prefix reuse)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Choice:
    """One generated answer.

    ``finish_reason`` is ``"stop"`` (end of text or a stop string), ``"length"`` (``max_tokens``
    or the context was reached) or ``"tool_calls"``. ``parsed`` holds the validated object when
    the call asked for structured output; ``tool_calls`` the calls the model made.
    """

    index: int
    text: str
    finish_reason: str
    parsed: Any = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass(frozen=True)
class Completion:
    """The result of ``Model.chat`` or ``Model.complete``: one choice per ``n``.

    The shortcuts ``text``, ``parsed``, ``tool_calls`` and ``finish_reason`` read the first choice.
    """

    model: str
    choices: list[Choice]
    usage: Usage

    @property
    def text(self) -> str:
        return self.choices[0].text

    @property
    def parsed(self) -> Any:
        return self.choices[0].parsed

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self.choices[0].tool_calls

    @property
    def finish_reason(self) -> str:
        return self.choices[0].finish_reason

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Chunk:
    """One piece of a streamed answer. The last chunk has ``finish_reason`` and ``usage`` set
    (its ``text`` may be empty)."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)

    def __str__(self) -> str:
        return self.text


def finish_name(finish: Finish | None) -> str:
    """The OpenAI name of a finish (a cancelled run reads as ``stop``)."""
    if finish is Finish.LENGTH:
        return "length"
    return "tool_calls" if finish is Finish.TOOL_CALLS else "stop"


def usage_of(counts: TokenCounts) -> Usage:
    return Usage(prompt_tokens=counts.prompt_tokens, completion_tokens=counts.completion_tokens,
                 cached_tokens=counts.cached_tokens)


def completion_of(result: RunResult, structure: Structure | None) -> Completion:
    choices = []
    for c in result.choices:
        reason = finish_name(c.finish)
        parsed = structure.parse(c.text, reason) if structure is not None and not c.tool_calls else None
        choices.append(Choice(index=c.index, text=c.text, finish_reason=reason, parsed=parsed,
                              tool_calls=c.tool_calls, logprobs=c.logprobs))
    return Completion(model=result.run.model, choices=choices, usage=usage_of(result.run.counts))
