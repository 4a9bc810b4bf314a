"""``slmkit.load``: a model in this process, on the same engine and generation service the
server uses (continuous batching included)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from pydantic import ValidationError
from typing_extensions import Unpack

from slmkit.api.requests import ChatKwargs, GenerateKwargs, Messages, Structure, chat_body, completion_body
from slmkit.api.results import Choice, Chunk, Completion, Usage, finish_name
from slmkit.engine.base import Embedder, Engine
from slmkit.errors import InvalidRequest, ModelClosed
from slmkit.server.generation import Generation, GenerationResult, raise_if_failed
from slmkit.server.metrics import Metrics
from slmkit.server.protocol.openai import ChatCompletionRequest, CompletionRequest
from slmkit.server.registry import ModelRegistry
from slmkit.server.services import GenerateOptions, GenerationService
from slmkit.server.tools import ToolPlan, collect_tool_choices, parse_tools, plan_tools
from slmkit.settings import EngineSettings, Settings, load_settings
from slmkit.store.modelfile import Profile

T = TypeVar("T")
ENGINE_OPTIONS = frozenset(EngineSettings.model_fields)


def load(name: str | None = None, *, home: str | Path | None = None, **engine_options: Any) -> Model:
    """Load a model into this process and return it.

    ``name`` is what ``slm serve --model`` takes: an embedded model (default: the embedded
    SmolLM2-135M-Instruct), a store name or alias, a Modelfile profile, or a path to a GGUF
    file or an ONNX folder. ``engine_options`` are the engine settings (``parallel``,
    ``ctx_size``, ``threads``, ``batch_size``, ``max_queue``, ``prefill_chunk``,
    ``context_overflow``); ``home`` the store (default ``$SLM_HOME`` or ``~/.slmkit``).
    Raises ``ModelNotFound``, ``ModelLoadError`` or ``InvalidRequest`` (bad options).
    """
    unknown = sorted(set(engine_options) - ENGINE_OPTIONS)
    if unknown:
        raise InvalidRequest(f"unknown engine option {unknown[0]!r}; the options are: "
                             f"{', '.join(sorted(ENGINE_OPTIONS))}", param=unknown[0])
    overrides: dict[str, Any] = {f"engine__{k}": v for k, v in engine_options.items()}
    if name is not None:
        overrides["server__models"] = [str(name)]
    try:
        settings = load_settings(server__keep_alive=-1, store__home=home, **overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidRequest(f"{error['loc'][-1]}: {error['msg']}", param=str(error["loc"][-1])) from None
    return Model(settings)


class Model:
    """A loaded model. Use it as a context manager, or call ``close()`` when done.

    Every call has a blocking form (``chat``, ``complete``, ``stream``, ``embed``) and an
    ``async`` one (``achat``, ``acomplete``, ``astream``, ``aembed``); calls made at the same
    time, from threads or tasks, are batched by the engine like concurrent server requests.
    Errors are those of ``slmkit.errors`` (``InvalidRequest``, ``ContextLengthExceeded``,
    ``Overloaded``, ``OutputInvalid``, ``ModelClosed``, ...).
    """

    def __init__(self, settings: Settings) -> None:
        """Prefer ``slmkit.load``."""
        self._settings = settings
        self._closed = False
        self._loop = asyncio.new_event_loop()  # runs the blocking calls and the registry
        self._thread = threading.Thread(target=self._loop.run_forever, name="slm-api-loop", daemon=True)
        self._thread.start()
        self._registry = ModelRegistry(settings)
        self._service = GenerationService(self._registry, Metrics(self._registry))
        try:
            self._engine: Engine | Embedder = self._call(self._start())
        except BaseException:
            self._stop_loop()
            raise

    async def _start(self) -> Engine | Embedder:
        try:
            await self._registry.start()
            if self._registry.default is not None:
                engine: Engine | Embedder = await self._registry.acquire(self._registry.default, keep_alive=-1)
                return engine
            return await self._registry.acquire(self._registry.default_embedding, keep_alive=-1, kind="embedding")
        except BaseException:  # a model that fails to load: stop the reaper, or its pending task is logged at exit
            await self._registry.aclose()
            raise

    # -- facts ---------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The name the model is served under."""
        return self._engine.name

    @property
    def kind(self) -> str:
        """``chat`` (generates text) or ``embedding``."""
        return "embedding" if isinstance(self._engine, Embedder) else "chat"

    @property
    def context_length(self) -> int:
        """Tokens one sequence may hold (prompt plus output)."""
        return self._engine.context_length

    @property
    def info(self) -> dict[str, Any]:
        """Facts about the loaded file: architecture, parameters, format, slots, ..."""
        return dict(self._engine.info)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def profile(self) -> Profile | None:
        """The Modelfile profile it was loaded with (SYSTEM, TEMPLATE, PARAMETERs), if any."""
        return self._registry.profile(self._engine.name)

    @property
    def chat_template(self) -> str | None:
        """The chat template in use: the profile's TEMPLATE, else the model's own."""
        profile = self.profile
        if profile is not None and profile.template:
            return profile.template
        template = getattr(self._engine, "template", None)
        return getattr(template, "source", None)

    def stats(self) -> dict[str, float]:
        """Live engine figures: running and waiting requests, KV-cache use, reused tokens."""
        return self._engine.stats()

    # -- tokens --------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]:
        """Token ids of ``text`` (with the BOS token the model wants when ``add_special``)."""
        self._check_open()
        return self._engine.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        self._check_open()
        vocab = int(self._engine.info.get("vocab_size") or 0)
        if vocab and any(not 0 <= int(t) < vocab for t in tokens):
            raise InvalidRequest(f"token ids must be in 0..{vocab - 1}", param="tokens")
        return self._engine.detokenize([int(t) for t in tokens])

    # -- chat ----------------------------------------------------------------------------
    def chat(self, messages: Messages, **options: Unpack[ChatKwargs]) -> Completion:
        """Answer a conversation: a string (one user message) or OpenAI-style messages.

        Options are the OpenAI API's: ``max_tokens``, ``temperature``, ``top_p``, ``top_k``,
        ``min_p``, ``seed``, ``stop``, ``n``, ``logit_bias``, ``logprobs`` (alternatives per
        token), ``tools`` / ``tool_choice``, and ``response_format``: a pydantic model class or a
        JSON schema (the output is constrained by a grammar and ``Completion.parsed`` holds the
        validated instance) or ``{"type": "json_object"}``.
        """
        return self._call(self.achat(messages, **options))

    async def achat(self, messages: Messages, **options: Unpack[ChatKwargs]) -> Completion:
        """``chat`` for async code."""
        body, structure = chat_body(messages, options)
        engine = self._chat_engine()
        generate, plan = self._options(engine, body, structure)
        prompt = self._service.chat_prompt(engine, [m.to_template() for m in body.messages],
                                           generate.max_tokens, plan)
        generation = self._service.start(engine.name, [prompt], generate)
        if plan is not None:
            return await self._collect_tools(generation, plan)
        return _completion(await self._service.collect(generation), structure)

    def parse(self, messages: Messages, schema: Any, **options: Unpack[GenerateKwargs]) -> Any:
        """The validated object of ``schema`` (a pydantic model class or a JSON schema) that the
        model writes for ``messages``: ``chat(..., response_format=schema).parsed``."""
        options["response_format"] = schema
        return self.chat(messages, **options).parsed

    async def aparse(self, messages: Messages, schema: Any, **options: Unpack[GenerateKwargs]) -> Any:
        options["response_format"] = schema
        return (await self.achat(messages, **options)).parsed

    # -- text completion -----------------------------------------------------------------
    def complete(self, prompt: str, **options: Unpack[GenerateKwargs]) -> Completion:
        """Continue ``prompt`` as plain text (no chat template)."""
        return self._call(self.acomplete(prompt, **options))

    async def acomplete(self, prompt: str, **options: Unpack[GenerateKwargs]) -> Completion:
        body, structure = completion_body(prompt, options)
        engine = self._chat_engine()
        generate, _ = self._options(engine, body, structure)
        tokens = engine.tokenize(prompt, add_special=True, parse_special=False)
        generation = self._service.start(engine.name, [tokens], generate, prompt_param="prompt")
        return _completion(await self._service.collect(generation), structure)

    # -- streaming -----------------------------------------------------------------------
    def stream(self, messages: Messages | None = None, *, prompt: str | None = None,
               **options: Unpack[GenerateKwargs]) -> Iterator[Chunk]:
        """Stream a chat answer (or, with ``prompt=``, a text completion) as ``Chunk``s.

        The request is checked when this is called; generation starts with the iteration and
        stops (freeing its slot) when the iterator is closed or garbage-collected early."""
        starter = self._stream_starter(messages, prompt, options)
        return self._sync_stream(starter)

    def astream(self, messages: Messages | None = None, *, prompt: str | None = None,
                **options: Unpack[GenerateKwargs]) -> AsyncIterator[Chunk]:
        """``stream`` for async code: ``async for chunk in model.astream(...)``."""
        starter = self._stream_starter(messages, prompt, options)
        return self._async_stream(starter)

    def _stream_starter(self, messages: Messages | None, prompt: str | None,
                        options: GenerateKwargs) -> Any:
        """Check everything now; return the function that starts the generation (in a running loop)."""
        if (messages is None) == (prompt is None):
            raise InvalidRequest("give either messages or prompt", param="messages")
        if any(options.get(k) is not None for k in ("tools", "tool_choice")):
            raise InvalidRequest("tool calls are not streamed by the Python API; use chat()", param="tools")
        if (options.get("n") or 1) != 1:
            raise InvalidRequest("streaming returns one choice; use chat() for n > 1", param="n")
        engine = self._chat_engine()
        body: ChatCompletionRequest | CompletionRequest
        if prompt is not None:
            body, structure = completion_body(prompt, options)
            tokens = engine.tokenize(prompt, add_special=True, parse_special=False)
        else:
            assert messages is not None
            body, structure = chat_body(messages, options)
            tokens = []
        generate, _ = self._options(engine, body, structure)
        if isinstance(body, ChatCompletionRequest):
            tokens = self._service.chat_prompt(engine, [m.to_template() for m in body.messages], generate.max_tokens)
        GenerationService.check_context(engine, tokens, generate.max_tokens, "prompt" if prompt else "messages")
        return lambda: self._service.start(engine.name, [tokens], generate)

    async def _async_stream(self, starter: Any) -> AsyncIterator[Chunk]:
        self._check_open()
        generation: Generation = starter()
        usage = generation.usage()
        try:
            async for index, event in generation.events():
                raise_if_failed(event)
                usage.add(index, event)
                if event.finish_reason is not None:
                    yield Chunk(event.text, finish_name(event.finish_reason), _usage(usage), event.logprobs)
                elif event.text or event.logprobs:
                    yield Chunk(event.text, logprobs=event.logprobs)
        finally:
            generation.cancel()

    def _sync_stream(self, starter: Any) -> Iterator[Chunk]:
        chunks = self._async_stream(starter)
        try:
            while True:
                try:
                    yield self._call(_next(chunks))
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._call(chunks.aclose())  # type: ignore[attr-defined]

    # -- embeddings ----------------------------------------------------------------------
    def embed(self, texts: str | Sequence[str], *, truncate: bool = True) -> list[list[float]]:
        """Unit-length vectors, one per text (an embedding model, such as all-minilm-l6-v2).
        Over-long texts are cut to the model's context unless ``truncate=False`` (then
        ``ContextLengthExceeded``)."""
        return self._call(self.aembed(texts, truncate=truncate))

    async def aembed(self, texts: str | Sequence[str], *, truncate: bool = True) -> list[list[float]]:
        self._check_open()
        if not isinstance(self._engine, Embedder):
            raise InvalidRequest(f"model '{self.name}' is not an embedding model; load one such as "
                                 "all-minilm-l6-v2 for embeddings", param="model")
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items or not all(isinstance(t, str) for t in items):
            raise InvalidRequest("texts must be a string or a non-empty list of strings", param="texts")
        result = await self._service.embed_with(self._engine, items, truncate=truncate, param="texts")
        return result.vectors

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Stop the engine and free its memory. Running calls end; later calls raise ``ModelClosed``."""
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._registry.aclose(), self._loop).result()
        finally:
            self._stop_loop()

    def __enter__(self) -> Model:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    async def __aenter__(self) -> Model:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.close)

    def __repr__(self) -> str:
        state = "closed" if self._closed else self.kind
        return f"<slmkit.Model {self._engine.name!r} ({state})>"

    # -- plumbing ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ModelClosed(f"model '{self._engine.name}' is closed; load it again with slmkit.load()")

    def _chat_engine(self) -> Engine:
        self._check_open()
        return self._service.engine(self._engine.name)

    def _options(self, engine: Engine, body: ChatCompletionRequest | CompletionRequest,
                 structure: Structure | None) -> tuple[GenerateOptions, ToolPlan | None]:
        options = GenerateOptions(sampling=body.sampling(), max_tokens=body.token_limit(), stop=body.stop_list(),
                                  n=body.n, logprobs=body.logprob_count())
        self._service.check_logit_bias(engine, options.sampling.logit_bias)
        plan = None
        if isinstance(body, ChatCompletionRequest) and (body.tools or body.tool_choice is not None):
            plan = plan_tools(parse_tools(body.tools), body.tool_choice, body.parallel_tool_calls)
        if plan is not None:
            if structure is not None:
                raise InvalidRequest("response_format and tools cannot be combined", param="response_format")
            options.sampling = replace(options.sampling, grammar=plan.grammar)
        return options, plan

    async def _collect_tools(self, generation: Generation, plan: ToolPlan) -> Completion:
        results, usage = await collect_tool_choices(generation, plan)
        choices = [Choice(index=i, text=r.text, finish_reason=r.finish, tool_calls=r.calls)
                   for i, r in enumerate(results)]
        return Completion(model=generation.model, choices=choices, usage=_usage(usage))

    def _call(self, work: Coroutine[Any, Any, T]) -> T:
        """Run ``work`` on the model's loop and wait; Ctrl-C cancels it (and frees its slots)."""
        if self._closed:
            work.close()
            self._check_open()
        future: Future[T] = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._loop.close()


async def _next(chunks: AsyncIterator[Chunk]) -> Chunk:
    return await chunks.__anext__()


def _usage(usage: Any) -> Usage:
    return Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                 cached_tokens=usage.cached_tokens)


def _completion(result: GenerationResult, structure: Structure | None) -> Completion:
    choices = []
    for i, c in enumerate(result.choices):
        reason = finish_name(c.finish_reason)
        parsed = structure.parse(c.text, reason) if structure is not None else None
        choices.append(Choice(index=i, text=c.text, finish_reason=reason, parsed=parsed, logprobs=c.logprobs))
    return Completion(model=result.generation.model, choices=choices, usage=_usage(result.usage))
