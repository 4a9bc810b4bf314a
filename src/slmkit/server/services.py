"""The one internal generation API that the OpenAI and Ollama adapters call."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from starlette.types import Message

from slmkit.engine.base import (
    Embedder,
    Engine,
    EventStream,
    FinishReason,
    GenerationRequest,
    SamplingParams,
    TokenEvent,
    TokenLogprob,
)
from slmkit.errors import ClientDisconnected, ContextLengthExceeded, EngineError, InvalidRequest
from slmkit.server.registry import ModelRegistry
from slmkit.server.tools import ToolPlan, prepare_messages

T = TypeVar("T")


@dataclass
class GenerateOptions:
    """API-neutral generation options."""

    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = None
    stop: Sequence[str] = ()
    n: int = 1
    logprobs: int | None = None  # alternatives per token; None = no logprobs


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
class EmbeddingResult:
    model: str
    vectors: list[list[float]]
    prompt_tokens: int
    load_s: float = 0.0
    total_s: float = 0.0


@dataclass
class ChoiceResult:
    text: str = ""
    finish_reason: FinishReason | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
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
        engine = self.registry.get(model)
        if isinstance(engine, Embedder):
            raise InvalidRequest(f"model '{engine.name}' is an embedding model: it cannot generate text",
                                 param="model")
        return engine

    async def load(self, model: str | None, *, keep_alive: float | None = None) -> Engine:
        """The chat/text engine for ``model``, loaded on demand (see ModelRegistry.acquire)."""
        await self.registry.acquire(model, keep_alive=keep_alive)
        return self.engine(model)

    async def embedder(self, model: str | None, *, keep_alive: float | None = None) -> Embedder:
        engine = await self.registry.acquire(model, keep_alive=keep_alive, kind="embedding")
        if not isinstance(engine, Embedder):
            raise InvalidRequest(f"model '{engine.name}' does not support embeddings; use an embedding model "
                                 "such as all-minilm-l6-v2", param="model")
        return engine

    async def embed(self, model: str | None, inputs: list[str] | list[list[int]], *, truncate: bool = True,
                    keep_alive: float | None = None, param: str = "input") -> EmbeddingResult:
        """Unit-length vectors, one per input. Over-long inputs are cut when ``truncate``,
        else rejected (400 naming ``param``)."""
        started = time.perf_counter()
        embedder = await self.embedder(model, keep_alive=keep_alive)
        load_s = time.perf_counter() - started
        token_lists = [embedder.tokenize(i) if isinstance(i, str) else list(i) for i in inputs]
        limit = embedder.context_length
        for index, tokens in enumerate(token_lists):
            if len(tokens) > limit and not truncate:
                raise ContextLengthExceeded(
                    f"input {index} has {len(tokens)} tokens, more than the model's context length of {limit}; "
                    "shorten it or allow truncation", param=param)
        token_lists = [embedder.truncate(t) for t in token_lists]
        vectors = await embedder.embed(token_lists)
        return EmbeddingResult(model=embedder.name, vectors=vectors, prompt_tokens=sum(map(len, token_lists)),
                               load_s=load_s, total_s=time.perf_counter() - started)

    def chat_prompt(self, engine: Engine, messages: list[dict[str, Any]], max_tokens: int | None = None,
                    plan: ToolPlan | None = None) -> list[int]:
        """Render and tokenize a chat (with tools, see ``server.tools``). With the ``truncate``
        overflow policy, the oldest non-system messages are dropped (the last one always stays)
        until it fits."""
        tokens = self._render(engine, messages, plan)
        if self.registry.settings.engine.context_overflow != "truncate":
            return tokens
        messages = list(messages)
        while len(tokens) + (max_tokens or 1) > engine.context_length:
            droppable = [i for i, m in enumerate(messages[:-1]) if m.get("role") != "system"]
            if not droppable:
                break
            del messages[droppable[0]]
            tokens = self._render(engine, messages, plan)
        return tokens

    @staticmethod
    def _render(engine: Engine, messages: list[dict[str, Any]], plan: ToolPlan | None) -> list[int]:
        if plan is None and not any(m.get("tool_calls") or m.get("role") == "tool" for m in messages):
            return engine.chat_tokens(engine.render_chat(messages, add_generation_prompt=True))
        messages, tools = prepare_messages(engine, messages, plan)
        return engine.chat_tokens(engine.render_chat(messages, add_generation_prompt=True, tools=tools))

    def start(self, model: str | None, prompts: list[list[int]], options: GenerateOptions,
              *, prompt_param: str = "messages") -> Generation:
        """Check limits, then queue one request per prompt and choice. Errors raise here,
        before any response starts, and nothing reaches the engine."""
        engine = self.engine(model)
        for prompt in prompts:
            self._check_context(engine, prompt, options.max_tokens, prompt_param)
        requests = [
            GenerationRequest(prompt=p, sampling=_choice_sampling(options.sampling, k),
                              max_tokens=options.max_tokens, stop=options.stop, logprobs=options.logprobs)
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
            result.logprobs.extend(event.logprobs)
            if event.finish_reason is not None:
                result.finish_reason = event.finish_reason
                result.timings = event.timings
        return GenerationResult(generation, results, usage)


def _choice_sampling(sampling: SamplingParams, k: int) -> SamplingParams:
    """Choice k of a seeded request gets seed + k, so n choices differ yet reproduce."""
    if k == 0 or sampling.seed is None:
        return sampling
    return replace(sampling, seed=sampling.seed + k)


async def until_disconnected(receive: Callable[[], Awaitable[Message]], work: Awaitable[T]) -> T:
    """Await ``work`` unless the client goes away first; then cancel it (freeing its slots)
    and raise ``ClientDisconnected``."""
    task = asyncio.ensure_future(work)

    async def wait_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(wait_disconnect())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientDisconnected("the client closed the connection")
