"""The one internal generation API that the OpenAI and Ollama adapters call."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from pydantic import BaseModel
from starlette.types import Message

from slmkit.engine.base import (
    Embedder,
    Engine,
    EventStream,
    GenerationRequest,
    SamplingParams,
)
from slmkit.errors import ClientDisconnected, ContextLengthExceeded, Forbidden, InvalidRequest
from slmkit.server.context import request_context
from slmkit.server.generation import ChoiceResult, Generation, GenerationResult, raise_if_failed
from slmkit.server.metrics import Metrics
from slmkit.server.registry import ModelRegistry
from slmkit.server.tools import ToolPlan, prepare_messages
from slmkit.store.modelfile import Profile

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass
class GenerateOptions:
    """API-neutral generation options."""

    sampling: SamplingParams = field(default_factory=SamplingParams)
    max_tokens: int | None = None
    stop: Sequence[str] = ()
    n: int = 1
    logprobs: int | None = None  # alternatives per token; None = no logprobs


@dataclass
class EmbeddingResult:
    model: str
    vectors: list[list[float]]
    prompt_tokens: int
    load_s: float = 0.0
    total_s: float = 0.0
    embed_s: float = 0.0


class GenerationService:
    """Validates, renders prompts, admits requests to engines and collects results."""

    def __init__(self, registry: ModelRegistry, metrics: Metrics) -> None:
        self.registry = registry
        self.metrics = metrics
        self.limits = registry.settings.server

    def engine(self, model: str | None) -> Engine:
        """The loaded engine serving ``model``; 404 if unknown, 403 if the caller's key may not use it."""
        engine = self.registry.get(model)
        self.check_scope(engine.name)
        if isinstance(engine, Embedder):
            raise InvalidRequest(f"model '{engine.name}' is an embedding model: it cannot generate text",
                                 param="model")
        return engine

    @staticmethod
    def check_scope(name: str) -> None:
        if not request_context().principal.may_use(name):
            raise Forbidden(f"this API key may not use the model '{name}'", param="model")

    def visible_models(self) -> list[str]:
        """The models the caller may use."""
        principal = request_context().principal
        return [name for name in self.registry.names() if principal.may_use(name)]

    async def load(self, model: str | None, *, keep_alive: float | None = None) -> Engine:
        """The chat/text engine for ``model``, loaded on demand (see ModelRegistry.acquire)."""
        self.check_scope(self.registry.canonical(model))
        await self.registry.acquire(model, keep_alive=keep_alive)
        return self.engine(model)

    async def embedder(self, model: str | None, *, keep_alive: float | None = None) -> Embedder:
        self.check_scope(self.registry.canonical(model, "embedding"))
        engine = await self.registry.acquire(model, keep_alive=keep_alive, kind="embedding")
        if not isinstance(engine, Embedder):
            raise InvalidRequest(f"model '{engine.name}' does not support embeddings; use an embedding model "
                                 "such as all-minilm-l6-v2", param="model")
        return engine

    async def embed(self, model: str | None, inputs: list[str] | list[list[int]], *, truncate: bool = True,
                    keep_alive: float | None = None, param: str = "input") -> EmbeddingResult:
        """Unit-length vectors, one per input, from ``model`` loaded on demand (see ``embed_with``)."""
        started = time.perf_counter()
        embedder = await self.embedder(model, keep_alive=keep_alive)
        result = await self.embed_with(embedder, inputs, truncate=truncate, param=param)
        result.total_s = time.perf_counter() - started
        result.load_s = result.total_s - result.embed_s
        return result

    async def embed_with(self, embedder: Embedder, inputs: list[str] | list[list[int]], *, truncate: bool = True,
                         param: str = "input") -> EmbeddingResult:
        """Unit-length vectors, one per input. Over-long inputs are cut when ``truncate``,
        else rejected (400 naming ``param``)."""
        started = time.perf_counter()
        token_lists = await asyncio.to_thread(
            lambda: [embedder.tokenize(i) if isinstance(i, str) else list(i) for i in inputs])
        limit = embedder.context_length
        for index, tokens in enumerate(token_lists):
            if len(tokens) > limit and not truncate:
                raise ContextLengthExceeded(
                    f"input {index} has {len(tokens)} tokens, more than the model's context length of {limit}; "
                    "shorten it or allow truncation", param=param)
        token_lists = [embedder.truncate(t) for t in token_lists]
        request_context().add_prompt(embedder.name, sum(map(len, token_lists)))
        vectors = await embedder.embed(token_lists)
        elapsed = time.perf_counter() - started
        return EmbeddingResult(model=embedder.name, vectors=vectors, prompt_tokens=sum(map(len, token_lists)),
                               total_s=elapsed, embed_s=elapsed)

    @staticmethod
    def check_logit_bias(engine: Engine, bias: dict[int, float]) -> None:
        """400 naming ``logit_bias`` when it names a token outside the model's vocabulary."""
        vocab = int(engine.info["vocab_size"])
        for token in bias:
            if not 0 <= token < vocab:
                raise InvalidRequest(f"logit_bias names token {token}, outside the vocabulary (0..{vocab - 1})",
                                     param="logit_bias")

    def chat_prompt(self, engine: Engine, messages: list[dict[str, Any]], max_tokens: int | None = None,
                    plan: ToolPlan | None = None) -> list[int]:
        """Render and tokenize a chat (with tools, see ``server.tools``; a served profile adds its
        SYSTEM, MESSAGEs and TEMPLATE). With the ``truncate`` overflow policy, the oldest
        non-system messages are dropped (the last one always stays) until it fits."""
        if len(messages) > self.limits.max_messages:
            raise InvalidRequest(f"at most {self.limits.max_messages} messages per request", param="messages")
        profile = self.registry.profile(engine.name)
        if profile is not None:
            messages = profile_messages(profile, messages)
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

    def _render(self, engine: Engine, messages: list[dict[str, Any]], plan: ToolPlan | None) -> list[int]:
        """Tools go through ``server.tools``; a served profile's TEMPLATE wins over the model's own."""
        tools = None
        if plan is not None or any(m.get("tool_calls") or m.get("role") == "tool" for m in messages):
            messages, tools = prepare_messages(engine, messages, plan)
        template = self.registry.profile_template(engine.name)
        if template is not None:
            return engine.chat_tokens(template.render(messages, add_generation_prompt=True))
        return engine.chat_tokens(engine.render_chat(messages, add_generation_prompt=True, tools=tools))

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
        if len(options.stop) > self.limits.max_stop:
            raise InvalidRequest(f"at most {self.limits.max_stop} stop strings", param="stop")
        for prompt in prompts:
            if len(prompt) > self.limits.max_prompt_tokens:
                raise InvalidRequest(f"the {prompt_param} may have at most {self.limits.max_prompt_tokens} tokens",
                                     param=prompt_param)
            self.check_context(engine, prompt, options.max_tokens, prompt_param)
        gid = uuid.uuid4().hex[:24]
        requests = [
            GenerationRequest(prompt=p, sampling=_choice_sampling(options.sampling, k),
                              max_tokens=options.max_tokens, stop=options.stop, logprobs=options.logprobs,
                              request_id=f"{gid}/{i}")
            for i, (p, k) in enumerate((p, k) for p in prompts for k in range(options.n))
        ]
        streams: list[EventStream] = []
        try:
            for request in requests:
                streams.append(engine.generate(request))
        except Exception:
            for stream in streams:
                stream.cancel()
            raise
        context = request_context()
        context.add_prompt(engine.name, sum(len(p) for p in prompts))
        observer = self.metrics.request(engine.name, sum(len(p) for p in prompts), len(streams))
        return Generation(id=gid, model=engine.name, created=int(time.time()),
                          prompts=prompts, n=options.n, streams=streams, observer=observer, context=context)

    @staticmethod
    def check_context(engine: Engine, prompt: list[int], max_tokens: int | None, param: str) -> None:
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


def profile_messages(profile: Profile, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The profile's SYSTEM (unless the request has its own) and MESSAGE history before the request's."""
    has_system = any(m.get("role") == "system" for m in messages)
    head = [] if has_system or not profile.system else [{"role": "system", "content": profile.system}]
    history = [dict(m) for m in profile.messages]
    if has_system and history:
        first, rest = messages[0], messages[1:]
        return [first, *history, *rest] if first.get("role") == "system" else [*history, *messages]
    return [*head, *history, *messages]


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
