"""One event pipeline: a started generation read as choice deltas.

``Run.deltas()`` is the only reader of engine events. It splits tool calls out of the text,
stops a choice that repeats a call, maps finish reasons (``tool_calls`` included) and turns
every failure into a ``SlmkitError`` (an unexpected one is logged with its traceback and
becomes ``InternalError``). Each wire format encodes these deltas; ``collect()`` gathers them
for non-streamed answers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import Enum

from slmkit.engine.base import FinishReason, TokenLogprob
from slmkit.errors import EngineError, InternalError, SlmkitError
from slmkit.server.generation import Generation, TokenCounts
from slmkit.server.tools import ToolCall, ToolCallStream, ToolPlan

log = logging.getLogger("slmkit.server")


class Finish(str, Enum):
    STOP = "stop"
    LENGTH = "length"
    TOOL_CALLS = "tool_calls"
    CANCELLED = "cancelled"  # the caller went away (or a drain ended it)


@dataclass
class Delta:
    """What one engine event means for one choice."""

    index: int
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)  # once per choice, when scoring the prompt
    token_ids: list[int] = field(default_factory=list)
    finish: Finish | None = None
    completion_tokens: int = 0  # the choice's total so far
    timings: dict[str, float] = field(default_factory=dict)
    interrupted: str | None = None  # why the server ended the choice early (it is shutting down)
    stop_sequence: str | None = None  # on the last delta: the stop string that ended the choice


@dataclass
class ChoiceOut:
    """One choice of a finished run."""

    index: int
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    finish: Finish = Finish.STOP
    completion_tokens: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    stop_sequence: str | None = None  # the stop string that ended it (None: end of turn, length, calls)


@dataclass
class RunResult:
    run: Run
    choices: list[ChoiceOut]


@dataclass
class Run:
    """A started generation (one stream per prompt and choice) and how to read it."""

    generation: Generation
    plan: ToolPlan | None = None
    echo: list[str] = field(default_factory=list)  # per choice: the prompt text to echo ("" for none)
    load_s: float = 0.0  # seconds spent loading the model for this call
    prompt_logprobs: bool = False  # each choice's first delta carries its prompt's logprobs (echo with logprobs)
    counts: TokenCounts = field(init=False)

    def __post_init__(self) -> None:
        self.counts = self.generation.usage()
        if not self.echo:
            self.echo = [""] * len(self.generation.streams)

    @property
    def id(self) -> str:
        return self.generation.id

    @property
    def model(self) -> str:
        return self.generation.model

    @property
    def created(self) -> int:
        return self.generation.created

    @property
    def choices(self) -> int:
        return len(self.generation.streams)

    def prompt(self, index: int) -> list[int]:
        """The prompt tokens choice ``index`` continues."""
        return self.generation.prompts[index // self.generation.n]

    def cancel(self) -> None:
        self.generation.cancel()

    async def deltas(self) -> AsyncIterator[Delta]:
        """Every choice's deltas as they come; raises ``SlmkitError`` on any failure."""
        splitters = [ToolCallStream(self.plan) for _ in self.generation.streams]
        try:
            async for index, event in self.generation.events():
                if event.finish_reason is FinishReason.ERROR:
                    raise EngineError(event.error or "generation failed")
                self.counts.add(index, event)
                splitter = splitters[index]
                text, calls = ("", []) if splitter.repeated else splitter.feed(event.text)
                if splitter.repeated:
                    self.generation.streams[index].cancel()
                delta = Delta(index=index, text=text, tool_calls=calls, logprobs=event.logprobs,
                              prompt_logprobs=event.prompt_logprobs, token_ids=event.token_ids,
                              completion_tokens=event.completion_tokens, timings=event.timings)
                if event.finish_reason is not None:
                    delta.text += splitter.finish()
                    delta.finish = _finish(event.finish_reason, bool(splitter.calls))
                    delta.interrupted = event.error
                    if delta.finish is Finish.STOP:
                        delta.stop_sequence = event.stop_sequence
                yield delta
        except SlmkitError:
            self.cancel()
            raise
        except Exception as exc:
            self.cancel()
            log.exception("generation %s failed", self.id)
            raise InternalError(f"internal error: {exc.__class__.__name__}") from exc

    async def collect(self) -> RunResult:
        """Read the run to its end."""
        out = [ChoiceOut(index=i) for i in range(self.choices)]
        async for delta in self.deltas():
            choice = out[delta.index]
            choice.text += delta.text
            choice.tool_calls += delta.tool_calls
            choice.logprobs += delta.logprobs
            choice.prompt_logprobs += delta.prompt_logprobs
            choice.token_ids += delta.token_ids
            choice.completion_tokens = delta.completion_tokens
            if delta.finish is not None:
                choice.finish = delta.finish
                choice.timings = delta.timings
                choice.stop_sequence = delta.stop_sequence
        return RunResult(self, out)


def _finish(reason: FinishReason, called: bool) -> Finish:
    if called:
        return Finish.TOOL_CALLS
    if reason is FinishReason.LENGTH:
        return Finish.LENGTH
    if reason is FinishReason.CANCELLED:
        return Finish.CANCELLED
    return Finish.STOP
