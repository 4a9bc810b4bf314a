"""The one internal generation API that the OpenAI and Ollama adapters call."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pydantic import BaseModel

from slmkit.engine.base import Engine, EventStream, FinishReason, GenerationRequest, SamplingParams, TokenEvent
from slmkit.errors import ContextLengthExceeded, EngineError, InvalidRequest
from slmkit.server.registry import ModelRegistry
from slmkit.store.modelfile import Profile

M = TypeVar("M", bound=BaseModel)


@dataclass
class GenerateOptions:
    """API-neutral generation options."""

    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = None
    stop: Sequence[str] = ()
    n: int = 1


@dataclass
class Generation:
    """Started generations (one per choice) for one API request."""

    id: str
    model: str
    created: int
    prompts: list[list[int]]  # one per input; each has ``n`` choices
    n: int
    streams: list[EventStream]  # choice i reads prompts[i // n]

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompts)

    def usage(self) -> Usage:
        return Usage(self)

    def cancel(self) -> None:
        for stream in self.streams:
            stream.cancel()

    async def events(self) -> AsyncIterator[tuple[int, TokenEvent]]:
        """All choices' events, interleaved as they arrive, tagged with the choice index."""
        if len(self.streams) == 1:
            async for event in self.streams[0]:
                yield 0, event
            return
        queue: asyncio.Queue[tuple[int, TokenEvent | None]] = asyncio.Queue()

        async def pump(index: int, stream: EventStream) -> None:
            async for event in stream:
                await queue.put((index, event))
            await queue.put((index, None))

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(self.streams)]
        try:
            remaining = len(tasks)
            while remaining:
                index, item = await queue.get()
                if item is None:
                    remaining -= 1
                else:
                    yield index, item
        finally:
            for task in tasks:
                task.cancel()
            self.cancel()


class Usage:
    """Token counts of a generation, gathered from each choice's latest event.

    The prompt counts once per input however many choices read it, as OpenAI counts it."""

    def __init__(self, generation: Generation) -> None:
        self._generation = generation
        self._completion = [0] * len(generation.streams)
        self._cached = [0] * len(generation.streams)

    def add(self, index: int, event: TokenEvent) -> None:
        self._completion[index] = event.completion_tokens
        self._cached[index] = event.cached_tokens

    @property
    def prompt_tokens(self) -> int:
        return self._generation.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return sum(self._completion)

    @property
    def cached_tokens(self) -> int:
        n = self._generation.n
        return sum(max(self._cached[i:i + n]) for i in range(0, len(self._cached), n))


@dataclass
class ChoiceResult:
    text: str = ""
    finish_reason: FinishReason | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class GenerationResult:
    generation: Generation
    choices: list[ChoiceResult]
    usage: Usage


def raise_if_failed(event: TokenEvent) -> None:
    if event.finish_reason is FinishReason.ERROR:
        raise EngineError(event.error or "generation failed")


class GenerationService:
    """Validates, renders prompts, admits requests to engines and collects results."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    def engine(self, model: str | None) -> Engine:
        return self.registry.get(model)

    def chat_prompt(self, engine: Engine, messages: list[dict[str, Any]]) -> list[int]:
        """Render and tokenize a chat; a served profile adds its SYSTEM, MESSAGEs and TEMPLATE."""
        profile = self.registry.profile(engine.name)
        if profile is not None:
            messages = profile_messages(profile, messages)
        template = self.registry.profile_template(engine.name)
        if template is not None:
            return engine.chat_tokens(template.render(messages, add_generation_prompt=True))
        return engine.chat_tokens(engine.render_chat(messages, add_generation_prompt=True))

    def with_profile_defaults(self, model: str, body: M) -> M:
        """The request with the served profile's PARAMETER defaults filled in where it left a field unset."""
        profile = self.registry.profile(model)
        if profile is None:
            return body
        fields = type(body).model_fields
        updates = {k: v for k, v in profile.request_defaults().items() if k in fields and getattr(body, k) is None}
        return body.model_copy(update=updates) if updates else body

    def start(self, model: str | None, prompts: list[list[int]], options: GenerateOptions,
              *, prompt_param: str = "messages") -> Generation:
        """Check limits, then queue one request per prompt and choice. Errors raise here,
        before any response starts, and nothing reaches the engine."""
        engine = self.engine(model)
        for prompt in prompts:
            self._check_context(engine, prompt, options.max_tokens, prompt_param)
        requests = [
            GenerationRequest(prompt=p, sampling=_choice_sampling(options.sampling, k),
                              max_tokens=options.max_tokens, stop=options.stop)
            for p in prompts for k in range(options.n)
        ]
        streams: list[EventStream] = []
        try:
            for request in requests:
                streams.append(engine.generate(request))
        except Exception:
            for stream in streams:
                stream.cancel()
            raise
        return Generation(id=uuid.uuid4().hex[:24], model=engine.name, created=int(time.time()),
                          prompts=prompts, n=options.n, streams=streams)

    @staticmethod
    def _check_context(engine: Engine, prompt: list[int], max_tokens: int | None, param: str) -> None:
        limit = engine.context_length
        if not prompt:
            raise InvalidRequest(f"the {param} are empty", param=param)
        wanted = len(prompt) + (max_tokens or 1)
        if wanted > limit:
            raise ContextLengthExceeded(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{wanted} tokens ({len(prompt)} in the {param}, {max_tokens or 1} for the completion). "
                f"Please reduce the length of the {param} or max_tokens.",
                param=param,
            )

    async def collect(self, generation: Generation) -> GenerationResult:
        """Run a generation to the end and gather each choice's text."""
        results = [ChoiceResult() for _ in generation.streams]
        usage = generation.usage()
        async for index, event in generation.events():
            raise_if_failed(event)
            usage.add(index, event)
            result = results[index]
            result.text += event.text
            if event.finish_reason is not None:
                result.finish_reason = event.finish_reason
                result.timings = event.timings
        return GenerationResult(generation, results, usage)


def profile_messages(profile: Profile, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The profile's SYSTEM (unless the request has its own) and MESSAGE history before the request's."""
    has_system = any(m.get("role") == "system" for m in messages)
    head = [] if has_system or not profile.system else [{"role": "system", "content": profile.system}]
    history = [dict(m) for m in profile.messages]
    if has_system and history:
        first, rest = messages[0], messages[1:]
        return [first, *history, *rest] if first.get("role") == "system" else [*history, *messages]
    return [*head, *history, *messages]


def _choice_sampling(sampling: SamplingParams, k: int) -> SamplingParams:
    """Choice k of a seeded request gets seed + k, so n choices differ yet reproduce."""
    if k == 0 or sampling.seed is None:
        return sampling
    return replace(sampling, seed=sampling.seed + k)
