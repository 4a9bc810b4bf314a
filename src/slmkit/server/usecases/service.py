"""The use-case layer: one method per use case, called by every door.

``chat``, ``complete`` and ``embed`` take a neutral call and do everything between a door and
an engine, once: scope, loading, the served profile's defaults, caps, token-id and logit-bias
checks, tools and grammars, rendering, context checks and admission. A door only translates
its body into a call and the returned ``Run`` into its wire format."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from dataclasses import dataclass, replace

from slmkit.engine.base import Embedder, Engine, GenerationRequest, SamplingParams, TokenEvents
from slmkit.engine.llamacpp.grammar import json_object_grammar, json_schema_grammar
from slmkit.errors import ContextLengthExceeded, Forbidden, InvalidRequest
from slmkit.server.context import Principal, request_context
from slmkit.server.generation import Generation, PromptOnly
from slmkit.server.metrics import Metrics
from slmkit.server.registry import ModelRegistry
from slmkit.server.tools import ToolPlan, parse_tools, plan_tools
from slmkit.server.usecases import prompts
from slmkit.server.usecases.calls import ChatCall, CompletionCall, EmbedCall, GenOptions, OutputFormat, Params
from slmkit.server.usecases.run import Run

MAX_EMBEDDING_INPUTS = 2048


@dataclass
class Prepared:
    """A checked, rendered request that has not reached the engine yet."""

    engine: Engine
    prompts: list[list[int]]
    options: GenOptions
    grammar: str | None
    params: Params
    plan: ToolPlan | None = None
    echo: bool = False
    prompt_logprobs: int | None = None  # score the prompt too (echo with logprobs), this many alternatives
    load_s: float = 0.0


@dataclass
class EmbeddingResult:
    model: str
    vectors: list[list[float]]
    prompt_tokens: int
    load_s: float = 0.0
    total_s: float = 0.0


class GenerationService:
    def __init__(self, registry: ModelRegistry, metrics: Metrics) -> None:
        self.registry = registry
        self.metrics = metrics
        self.limits = registry.settings.server

    # -- who may use what ------------------------------------------------------------
    @staticmethod
    def principal(given: Principal | None = None) -> Principal:
        return given if given is not None else request_context().principal

    def check_scope(self, name: str, principal: Principal | None = None) -> None:
        if not self.principal(principal).may_use(name):
            raise Forbidden(f"this API key may not use the model '{name}'", param="model")

    def visible_models(self, principal: Principal | None = None) -> list[str]:
        who = self.principal(principal)
        return [name for name in self.registry.names() if who.may_use(name)]

    async def load(self, model: str | None, *, keep_alive: float | None = None,
                   principal: Principal | None = None) -> Engine:
        """The text engine for ``model``, loaded on demand; 404 unknown, 403 out of scope."""
        self.check_scope(self.registry.canonical(model), principal)
        engine = await self.registry.acquire(model, keep_alive=keep_alive)
        if isinstance(engine, Embedder) or not isinstance(engine, Engine):
            raise InvalidRequest(f"model '{engine.name}' is an embedding model: it cannot generate text",
                                 param="model")
        return engine

    async def tokenizer(self, model: str | None, principal: Principal | None = None) -> Engine | Embedder:
        """Any loaded model (text or embedding), for tokenizing."""
        self.check_scope(self.registry.canonical(model), principal)
        engine: Engine | Embedder = await self.registry.acquire(model)
        return engine

    async def unload(self, model: str | None, principal: Principal | None = None) -> bool:
        self.check_scope(self.registry.canonical(model), principal)
        return await self.registry.unload(model)

    async def embedder(self, model: str | None, *, keep_alive: float | None = None,
                       principal: Principal | None = None) -> Embedder:
        self.check_scope(self.registry.canonical(model, "embedding"), principal)
        engine = await self.registry.acquire(model, keep_alive=keep_alive, kind="embedding")
        if not isinstance(engine, Embedder):
            raise InvalidRequest(f"model '{engine.name}' does not support embeddings; use an embedding model "
                                 "such as all-minilm-l6-v2", param="model")
        return engine

    # -- use cases ----------------------------------------------------------------------
    async def chat(self, call: ChatCall) -> Run:
        """Answer a conversation (tools and structured output included)."""
        return self.start(await self.prepare_chat(call))

    async def complete(self, call: CompletionCall) -> Run:
        """Continue one or more plain-text prompts."""
        return self.start(await self.prepare_completion(call))

    def start(self, prepared: Prepared) -> Run:
        """Admit a prepared request to its engine (``Overloaded`` when the queue is full)."""
        p = prepared
        generation = self._start(p.engine, p.prompts, p.options, p.grammar, p.prompt_logprobs)
        echo = [p.engine.detokenize(generation.prompts[i // p.options.n]) if p.echo else ""
                for i in range(len(generation.streams))]
        return Run(generation, p.plan, echo, p.load_s, prompt_logprobs=p.prompt_logprobs is not None)

    async def prepare_chat(self, call: ChatCall) -> Prepared:
        started = time.perf_counter()
        engine = await self.load(call.model, keep_alive=call.keep_alive, principal=call.principal)
        if len(call.messages) > self.limits.max_messages:
            raise InvalidRequest(f"at most {self.limits.max_messages} messages per request", param=call.params.input)
        _check_think(call.think, call.model or engine.name, call.params.think)
        options = self._options(engine, call.options, call.params)
        plan = await asyncio.to_thread(self._plan, call)
        grammar = plan.grammar if plan is not None else await _grammar(call.format)
        truncate, room, limit = self._truncation(engine, call.truncate, options)
        prompt = await self._render(engine, call, plan, truncate, room, limit)
        if call.context:
            engine.info.check_tokens(call.context, "context")
            kept = max(limit - room - len(prompt), 0) if truncate else len(call.context)
            prompt = [*call.context[len(call.context) - kept:], *prompt]  # the oldest context goes first
        options = self._fit(engine, options, prompt)
        self._check_prompts(engine, [prompt], options, call.params)
        return Prepared(engine, [prompt], options, grammar, call.params, plan, load_s=time.perf_counter() - started)

    async def count_chat(self, call: ChatCall) -> int:
        """The prompt tokens ``chat`` would send for this call (profile, tools and template
        applied as they would be); nothing is generated and no context check applies."""
        engine = await self.load(call.model, keep_alive=call.keep_alive, principal=call.principal)
        if len(call.messages) > self.limits.max_messages:
            raise InvalidRequest(f"at most {self.limits.max_messages} messages per request", param=call.params.input)
        plan = await asyncio.to_thread(self._plan, call)
        return len(await self._render(engine, call, plan, truncate=False, room=1))

    async def _render(self, engine: Engine, call: ChatCall, plan: ToolPlan | None, truncate: bool,
                      room: int, limit: int | None = None) -> list[int]:
        """The chat's prompt tokens, rendered in a worker thread with the served profile."""
        entry = self.registry.entry(engine.name)
        return await asyncio.to_thread(
            prompts.chat_tokens, engine, call.messages, profile=entry.profile if entry else None,
            template=entry.template if entry else None, plan=plan, truncate=truncate, room=room, limit=limit,
            continue_final=call.continue_final)

    async def prepare_completion(self, call: CompletionCall) -> Prepared:
        started = time.perf_counter()
        engine = await self.load(call.model, keep_alive=call.keep_alive, principal=call.principal)
        if not call.prompts:
            raise InvalidRequest(f"{call.params.input} must not be empty", param=call.params.input)
        if len(call.prompts) > self.limits.max_prompts:
            raise InvalidRequest(f"at most {self.limits.max_prompts} prompts per request", param=call.params.input)
        _check_think(call.think, call.model or engine.name)
        options = self._options(engine, call.options, call.params)
        if options.max_tokens is None and call.default_max_tokens is not None:
            options = replace(options, max_tokens=call.default_max_tokens)
        if options.max_tokens == 0 and not call.echo:
            raise InvalidRequest("max_tokens must be at least 1; 0 only scores the prompt, with echo",
                                 param=call.params.max_tokens)
        grammar = await _grammar(call.format)
        tokens = await asyncio.to_thread(
            lambda: [prompts.text_tokens(engine, p, parse_special=call.parse_special, param=call.params.input)
                     for p in call.prompts])
        if call.context:
            engine.info.check_tokens(call.context, "context")
            tokens = [[*call.context, *t] for t in tokens]
        truncate, room, limit = self._truncation(engine, call.truncate, options)
        if truncate:
            tokens = [prompts.keep_end(engine, t, limit - room) for t in tokens]
        options = self._fit(engine, options, max(tokens, key=len))
        self._check_prompts(engine, tokens, options, call.params)
        return Prepared(engine, tokens, options, grammar, call.params, echo=call.echo,
                        prompt_logprobs=options.logprobs if call.echo else None, load_s=time.perf_counter() - started)

    async def embed(self, call: EmbedCall) -> EmbeddingResult:
        """Unit-length vectors, one per input; over-long inputs cut when ``truncate``, else 400;
        with ``dimensions``, each vector's first dimensions, renormalized (both doors)."""
        started = time.perf_counter()
        if not call.inputs and not call.empty_ok:
            raise InvalidRequest(f"{call.param} must not be empty", param=call.param)
        if len(call.inputs) > MAX_EMBEDDING_INPUTS:
            raise InvalidRequest(f"{call.param} may hold at most {MAX_EMBEDDING_INPUTS} items", param=call.param)
        embedder = await self.embedder(call.model, keep_alive=call.keep_alive, principal=call.principal)
        if call.dimensions is not None and call.dimensions > embedder.dimensions:
            raise InvalidRequest(f"model '{embedder.name}' produces {embedder.dimensions}-dimensional vectors: "
                                 f"dimensions may be at most {embedder.dimensions}", param="dimensions")
        loaded = time.perf_counter()
        tokens = await asyncio.to_thread(self._embed_tokens, embedder, call)
        request_context().add_prompt(embedder.name, sum(map(len, tokens)))
        vectors = await embedder.embed(tokens) if tokens else []
        if call.dimensions is not None and call.dimensions < embedder.dimensions:
            vectors = [_shorten(v, call.dimensions) for v in vectors]
        total = time.perf_counter() - started
        return EmbeddingResult(model=embedder.name, vectors=vectors, prompt_tokens=sum(map(len, tokens)),
                               load_s=loaded - started, total_s=total)

    @staticmethod
    def _embed_tokens(embedder: Embedder, call: EmbedCall) -> list[list[int]]:
        out = []
        for index, item in enumerate(call.inputs):
            if isinstance(item, str):
                tokens = embedder.tokenize(item)
            else:
                embedder.info.check_tokens(item, call.param)
                tokens = list(item)
            if not tokens:
                raise InvalidRequest(f"{call.param} {index} is empty", param=call.param)
            if len(tokens) > embedder.context_length and not call.truncate:
                raise ContextLengthExceeded(
                    f"input {index} has {len(tokens)} tokens, more than the model's context length of "
                    f"{embedder.context_length}; shorten it or allow truncation", param=call.param)
            out.append(embedder.truncate(tokens))
        return out

    # -- the steps ------------------------------------------------------------------------
    def _options(self, engine: Engine, given: GenOptions, params: Params) -> GenOptions:
        """The call's options over the profile's defaults, checked against the server's caps."""
        entry = self.registry.entry(engine.name)
        options = given.with_profile(entry.profile.parameters) if entry and entry.profile else given
        if options.max_tokens is not None and options.max_tokens > self.limits.max_tokens_cap:
            raise InvalidRequest(f"max_tokens may be at most {self.limits.max_tokens_cap}", param=params.max_tokens)
        if options.n > self.limits.max_n:
            raise InvalidRequest(f"n may be at most {self.limits.max_n}", param="n")
        if len(options.stop or ()) > self.limits.max_stop:
            raise InvalidRequest(f"at most {self.limits.max_stop} stop strings", param=params.stop)
        if options.logit_bias:
            engine.info.check_tokens(list(options.logit_bias), "logit_bias")
        return options

    @staticmethod
    def _plan(call: ChatCall) -> ToolPlan | None:  # builds a grammar: called in a worker thread
        if call.tools is None and call.tool_choice is None:
            return None
        tools = parse_tools(call.tools, call.params.tools, call.params.tool_schema)
        plan = plan_tools(tools, call.tool_choice, call.parallel_tool_calls)
        if plan is not None and call.format is not None:
            raise InvalidRequest(f"{call.format.param} and tools cannot be combined", param=call.format.param)
        return plan

    def _truncation(self, engine: Engine, asked: bool | None, options: GenOptions) -> tuple[bool, int, int]:
        """Whether to cut an over-long input (the call's word, else the server's setting), the
        context to fit (``num_ctx`` when smaller) and the room the answer keeps in it: ``max_tokens``,
        else a quarter of it (the engine never shifts the context, as Ollama's runner does)."""
        truncate = asked if asked is not None else self.registry.settings.engine.context_overflow == "truncate"
        limit = min(options.num_ctx or engine.context_length, engine.context_length)
        return truncate, options.max_tokens or max(1, limit // 4), limit

    @staticmethod
    def _fit(engine: Engine, options: GenOptions, prompt: list[int]) -> GenOptions:
        """``num_ctx`` below the slot's context caps the answer to what fits in it."""
        if options.num_ctx is None or options.num_ctx >= engine.context_length:
            return options
        room = options.num_ctx - len(prompt)
        if room < 1:
            raise ContextLengthExceeded(f"the prompt has {len(prompt)} tokens, more than "
                                        f"options.num_ctx={options.num_ctx}", param="options.num_ctx")
        return replace(options, max_tokens=room if options.max_tokens is None else min(options.max_tokens, room))

    def _check_prompts(self, engine: Engine, prompts_: list[list[int]], options: GenOptions, params: Params) -> None:
        settings = self.registry.settings.engine
        capacity = settings.parallel + settings.max_queue
        if len(prompts_) * options.n > capacity:  # could never be admitted: a client error, not a retry
            raise InvalidRequest(f"{len(prompts_)} prompt(s) x n={options.n} is more sequences than the server holds "
                                 f"at once ({capacity}: slots plus wait queue)", param=params.input)
        for prompt in prompts_:
            if len(prompt) > self.limits.max_prompt_tokens:
                raise InvalidRequest(f"the {params.input} may have at most {self.limits.max_prompt_tokens} tokens",
                                     param=params.input)
            prompts.check_context(engine, prompt, options.max_tokens, params.input)

    def _start(self, engine: Engine, prompts_: list[list[int]], options: GenOptions, grammar: str | None,
               prompt_logprobs: int | None = None) -> Generation:
        """Queue one request per prompt and choice (all checks are done by then). A request
        that neither generates nor scores (``max_tokens`` 0 without logprobs) needs no engine."""
        sampling = options.sampling(grammar)
        gid = uuid.uuid4().hex[:24]
        pairs = [(p, k) for p in prompts_ for k in range(options.n)]
        requests = [GenerationRequest(prompt=p, sampling=_choice_sampling(sampling, k), max_tokens=options.max_tokens,
                                      stop=options.stop or (), logprobs=options.logprobs,
                                      prompt_logprobs=prompt_logprobs, request_id=f"{gid}/{i}")
                    for i, (p, k) in enumerate(pairs)]
        idle = options.max_tokens == 0 and prompt_logprobs is None
        streams: list[TokenEvents] = []
        try:
            for request in requests:
                streams.append(PromptOnly(request.prompt) if idle else engine.generate(request))
        except Exception:
            for stream in streams:
                stream.cancel()
            raise
        context = request_context()
        context.add_prompt(engine.name, sum(len(p) for p in prompts_))
        observer = self.metrics.request(engine.name, sum(len(p) for p in prompts_), len(streams))
        return Generation(id=gid, model=engine.name, created=int(time.time()),
                          prompts=prompts_, n=options.n, streams=streams, observer=observer, context=context)


async def _grammar(fmt: OutputFormat | None) -> str | None:
    """The GBNF grammar for structured output, built off the event loop."""
    if fmt is None:
        return None
    if fmt.kind == "json_object":
        return json_object_grammar()
    if fmt.schema is None:
        raise InvalidRequest(f"{fmt.param} of type json_schema needs a schema", param=fmt.param)
    return await asyncio.to_thread(json_schema_grammar, fmt.schema, fmt.param)


def _check_think(think: bool, model: str, param: str = "think") -> None:
    """No engine here separates a reasoning trace from the answer yet: asking for one is a 400
    (in Ollama's words), not a silently ignored option."""
    if think:
        raise InvalidRequest(f'"{model}" does not support thinking', param=param)


def _shorten(vector: list[float], size: int) -> list[float]:
    """The first ``size`` dimensions, back to unit length (how Matryoshka embeddings shorten)."""
    head = vector[:size]
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm > 0 else head


def _choice_sampling(sampling: SamplingParams, k: int) -> SamplingParams:
    """Choice k of a seeded request gets seed + k, so n choices differ yet reproduce."""
    if k == 0 or sampling.seed is None:
        return sampling
    return replace(sampling, seed=sampling.seed + k)

