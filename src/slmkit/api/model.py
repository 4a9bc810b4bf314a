"""``slmkit.load``: a model in this process, on the same engine and generation service the
server uses (continuous batching included)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from typing_extensions import Unpack

from slmkit.api.requests import ChatKwargs, GenerateKwargs, Messages, chat_body, completion_body
from slmkit.api.results import Chunk, Completion, completion_of, finish_name, usage_of
from slmkit.engine.base import Embedder, Engine
from slmkit.errors import Forbidden, InvalidRequest, ModelClosed
from slmkit.server.context import Principal
from slmkit.server.metrics import Metrics
from slmkit.server.registry import ModelRegistry
from slmkit.server.usecases.calls import ChatCall, CompletionCall, EmbedCall
from slmkit.server.usecases.service import GenerationService, Prepared
from slmkit.settings import Settings
from slmkit.store.modelfile import Profile

T = TypeVar("T")
CallT = TypeVar("CallT", ChatCall, CompletionCall)
LOCAL = Principal(name="local", admin=True)  # in process, the caller owns the store


class Model:
    """A loaded model. Use it as a context manager, or call ``close()`` when done.

    Every call has a blocking form (``chat``, ``complete``, ``stream``, ``embed``) and an
    ``async`` one (``achat``, ``acomplete``, ``astream``, ``aembed``); calls made at the same
    time, from threads or tasks, are batched by the engine like concurrent server requests.
    Errors are those of ``slmkit.errors`` (``InvalidRequest``, ``ContextLengthExceeded``,
    ``Overloaded``, ``OutputInvalid``, ``ModelClosed``, ...).
    """

    def __init__(self, settings: Settings, principal: Principal | None = None) -> None:
        """Prefer ``slmkit.load`` (api/loading.py)."""
        self._settings = settings
        self._principal = principal or LOCAL
        self._closed = False
        self._loop = asyncio.new_event_loop()  # runs the blocking calls and the registry
        self._thread = threading.Thread(target=self._loop.run_forever, name="slm-api-loop", daemon=True)
        self._thread.start()
        self._registry = ModelRegistry(settings)
        self._service = GenerationService(self._registry, Metrics(self._registry))
        try:
            self._engine: Engine | Embedder = self._run(self._start())
        except BaseException:
            self._stop_loop()
            raise

    async def _start(self) -> Engine | Embedder:
        try:
            await self._registry.start()
            default = self._registry.default or self._registry.default_embedding
            if default is not None and not self._principal.may_use(default):
                raise Forbidden(f"this API key may not use the model '{default}'", param="model")
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
        return self._engine.info.as_dict()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def profile(self) -> Profile | None:
        """The Modelfile profile it was loaded with (SYSTEM, TEMPLATE, PARAMETERs), if any."""
        entry = self._registry.entry(self._engine.name)
        return entry.profile if entry is not None else None

    @property
    def chat_template(self) -> str | None:
        """The chat template in use: the profile's TEMPLATE, else the model's own."""
        profile = self.profile
        if profile is not None and profile.template:
            return profile.template
        if isinstance(self._engine, Embedder):
            return None
        return getattr(self._engine.template, "source", None)

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
        self._engine.info.check_tokens(tokens, "tokens")
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
        return self._run(self._chat(messages, options))

    async def achat(self, messages: Messages, **options: Unpack[ChatKwargs]) -> Completion:
        """``chat`` for async code."""
        return await self._await(self._chat(messages, options))

    async def _chat(self, messages: Messages, options: ChatKwargs) -> Completion:
        body, structure = chat_body(messages, options)
        run = await self._service.chat(self._call(body.to_call()))
        return completion_of(await run.collect(), structure)

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
        return self._run(self._complete(prompt, options))

    async def acomplete(self, prompt: str, **options: Unpack[GenerateKwargs]) -> Completion:
        return await self._await(self._complete(prompt, options))

    async def _complete(self, prompt: str, options: GenerateKwargs) -> Completion:
        body, structure = completion_body(prompt, options)
        run = await self._service.complete(self._call(body.to_call()))
        return completion_of(await run.collect(), structure)

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
        return self._proxy_stream(starter)

    def _stream_starter(self, messages: Messages | None, prompt: str | None,
                        options: GenerateKwargs) -> Prepared:
        """Check and render everything now; the generation starts with the iteration."""
        if (messages is None) == (prompt is None):
            raise InvalidRequest("give either messages or prompt", param="messages")
        if any(options.get(k) is not None for k in ("tools", "tool_choice")):
            raise InvalidRequest("tool calls are not streamed by the Python API; use chat()", param="tools")
        if (options.get("n") or 1) != 1:
            raise InvalidRequest("streaming returns one choice; use chat()  for n > 1", param="n")
        if prompt is not None:
            call = self._call(completion_body(prompt, options)[0].to_call())
            return self._run(self._service.prepare_completion(call))
        assert messages is not None
        return self._run(self._service.prepare_chat(self._call(chat_body(messages, options)[0].to_call())))

    async def _async_stream(self, prepared: Prepared) -> AsyncGenerator[Chunk, None]:
        self._check_open()
        run = self._service.start(prepared)
        try:
            async for delta in run.deltas():
                if delta.finish is not None:
                    yield Chunk(delta.text, finish_name(delta.finish), usage_of(run.counts), delta.logprobs)
                elif delta.text or delta.logprobs:
                    yield Chunk(delta.text, logprobs=delta.logprobs)
        finally:
            run.cancel()

    async def _proxy_stream(self, starter: Prepared) -> AsyncIterator[Chunk]:
        """The stream runs on the model's loop; the caller's loop reads it chunk by chunk."""
        chunks = self._async_stream(starter)
        pending: Future[Chunk] | None = None
        try:
            while True:
                self._check_open()
                pending = asyncio.run_coroutine_threadsafe(_next(chunks), self._loop)
                try:
                    yield await asyncio.wrap_future(pending)
                except StopAsyncIteration:
                    return
        finally:
            # Cancelled mid-read (Ctrl-C): cancelling ``pending`` only asks the model's loop to
            # cancel the read, which may still be running there; close the generator there, once
            # that read has seen the cancellation.
            if pending is not None and not pending.done():
                pending.cancel()
            if not self._closed:
                await self._await(_aclose_when_idle(chunks))

    def _sync_stream(self, starter: Any) -> Iterator[Chunk]:
        chunks = self._async_stream(starter)
        try:
            while True:
                try:
                    yield self._run(_next(chunks))
                except StopAsyncIteration:
                    return
        finally:
            if not self._closed:
                self._run(_aclose_when_idle(chunks))

    # -- embeddings ----------------------------------------------------------------------
    def embed(self, texts: str | Sequence[str], *, truncate: bool = True) -> list[list[float]]:
        """Unit-length vectors, one per text (an embedding model, such as all-minilm-l6-v2).
        Over-long texts are cut to the model's context unless ``truncate=False`` (then
        ``ContextLengthExceeded``)."""
        return self._run(self._embed(texts, truncate))

    async def aembed(self, texts: str | Sequence[str], *, truncate: bool = True) -> list[list[float]]:
        return await self._await(self._embed(texts, truncate))

    async def _embed(self, texts: str | Sequence[str], truncate: bool) -> list[list[float]]:
        self._check_open()
        if not isinstance(self._engine, Embedder):
            raise InvalidRequest(f"model '{self.name}' is not an embedding model; load one such as "
                                 "all-minilm-l6-v2 for embeddings", param="model")
        items = [texts] if isinstance(texts, str) else list(texts)
        if not items or not all(isinstance(t, str) for t in items):
            raise InvalidRequest("texts must be a string or a non-empty list of strings", param="texts")
        call = EmbedCall(model=self._engine.name, inputs=list(items), truncate=truncate, principal=self._principal,
                         param="texts")
        return (await self._service.embed(call)).vectors

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

    def _call(self, call: CallT) -> CallT:
        """The call on this model, made by the local operator (no key applies in process)."""
        self._check_open()
        call.model = self._engine.name
        call.principal = self._principal
        if isinstance(call, CompletionCall):
            call.default_max_tokens = None
        return call

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
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

    async def _await(self, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work`` run on the model's loop (where its engine delivers events)."""
        if self._closed:
            work.close()
            self._check_open()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, self._loop))

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._loop.close()


async def _next(chunks: AsyncIterator[Chunk]) -> Chunk:
    return await chunks.__anext__()


async def _aclose_when_idle(chunks: AsyncGenerator[Chunk, None], wait: float = 30.0) -> None:
    """Close ``chunks`` once no read of it is running (a cancelled read ends at its next await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while getattr(chunks, "ag_running", False):  # not in the AsyncGenerator protocol
        if loop.time() > deadline:
            return  # a read that ignores its cancellation: leave the generator to the collector
        await asyncio.sleep(0.005)
    await chunks.aclose()
