"""Ollama routes (``/api/...``): a thin adapter over the same GenerationService as /v1.

The store routes (pull, delete, copy, create) live in ``ollama_store.py``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from slmkit import __version__
from slmkit.engine.base import Engine
from slmkit.engine.llamacpp.metadata import GgufFacts
from slmkit.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound, SlmkitError
from slmkit.server.generation import Generation
from slmkit.server.protocol.ollama import (
    ChatRequest,
    Details,
    EmbeddingsRequest,
    EmbeddingsResponse,
    EmbedRequest,
    EmbedResponse,
    GenerateRequest,
    ModelEntry,
    OllamaRequest,
    PsResponse,
    RunningEntry,
    TagsResponse,
    now_rfc3339,
    parse_keep_alive,
    rfc3339,
)
from slmkit.server.services import GenerateOptions, GenerationService, until_disconnected
from slmkit.server.tools import ToolCall, ToolPlan, parse_tools, plan_tools, tool_deltas

router = APIRouter(tags=["ollama"])
# The Ollama API version whose behaviour these routes follow (clients gate features on it).
OLLAMA_API_VERSION = "0.12.0"
_FOREVER_S = 100 * 365 * 24 * 3600.0


def _service(request: Request) -> GenerationService:
    return request.app.state.service  # type: ignore[no-any-return]


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def _not_found(name: str) -> ModelNotFound:
    return ModelNotFound(f"model '{name}' not found", param="model")


async def _load(service: GenerationService, body: OllamaRequest) -> tuple[Engine, float]:
    started = time.perf_counter()
    try:
        engine = await service.load(body.model, keep_alive=body.keep_alive_s())
    except ModelNotFound as exc:
        raise _not_found(body.model) from exc
    return engine, time.perf_counter() - started


def _options(body: OllamaRequest, engine: Engine, prompt: list[int], grammar: str | None) -> GenerateOptions:
    """Ollama options in engine terms; ``num_ctx`` may shrink, never grow, the slot's context."""
    max_tokens = body.options.max_tokens()
    num_ctx = body.options.num_ctx
    if num_ctx is not None and num_ctx < engine.context_length:
        room = num_ctx - len(prompt)
        if room < 1:
            raise ContextLengthExceeded(f"the prompt has {len(prompt)} tokens, more than options.num_ctx={num_ctx}",
                                        param="options.num_ctx")
        max_tokens = min(max_tokens or room, room)
    return GenerateOptions(sampling=body.options.sampling(grammar), max_tokens=max_tokens,
                           stop=body.options.stop or [])


def _ndjson(lines: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def encode() -> AsyncIterator[str]:
        try:
            async for line in lines:
                yield json.dumps(line, ensure_ascii=False) + "\n"
        except SlmkitError as exc:
            yield json.dumps({"error": exc.message}) + "\n"

    return StreamingResponse(encode(), media_type="application/x-ndjson")


async def _load_only(request: Request, body: OllamaRequest, loaded_s: float, field: str) -> dict[str, Any]:
    """An empty prompt loads the model, or with keep_alive 0 unloads it (as Ollama does)."""
    keep = body.keep_alive_s()
    reason = "load"
    if keep == 0:
        await _service(request).registry.unload(body.model)
        reason = "unload"
    empty: Any = "" if field == "response" else {"role": "assistant", "content": ""}
    return {"model": body.model, "created_at": now_rfc3339(), field: empty, "done": True, "done_reason": reason,
            "load_duration": _ns(loaded_s), "total_duration": _ns(loaded_s)}


def _final(generation: Generation, delta_event: Any, started: float, load_s: float, reason: str) -> dict[str, Any]:
    t = delta_event.timings
    return {"done": True, "done_reason": reason,
            "total_duration": _ns(time.perf_counter() - started), "load_duration": _ns(load_s),
            "prompt_eval_count": generation.prompt_tokens, "prompt_eval_duration": _ns(t.get("prompt_s", 0.0)),
            "eval_count": delta_event.completion_tokens, "eval_duration": _ns(t.get("generation_s", 0.0))}


def _reason(finish: str | None) -> str:
    return "length" if finish == "length" else "stop"


# -- generate --------------------------------------------------------------------------
@router.post("/api/generate", response_model=None)
async def generate(body: GenerateRequest, request: Request) -> Any:
    started = time.perf_counter()
    if body.images:
        raise InvalidRequest(f"model '{body.model}' does not support images: it is a text model", param="images")
    if body.suffix:
        raise InvalidRequest("suffix (fill-in-the-middle) is not supported", param="suffix")
    if body.template:
        raise InvalidRequest("template overrides are not supported: the model's own chat template is used",
                             param="template")
    grammar = await asyncio.to_thread(body.grammar)  # grammars are built, prompts tokenized off the event loop
    service = _service(request)
    engine, load_s = await _load(service, body)
    if not body.prompt and not body.system:
        return await _load_only(request, body, load_s, "response")
    if body.raw:
        prompt = await asyncio.to_thread(engine.tokenize, body.prompt, add_special=True, parse_special=True)
    else:
        messages = [{"role": "system", "content": body.system}] if body.system else []
        prompt = await asyncio.to_thread(service.chat_prompt, engine,
                                         [*messages, {"role": "user", "content": body.prompt}])
    prompt = [*(body.context or []), *prompt]
    generation = service.start(engine.name, [prompt], _options(body, engine, prompt, grammar), prompt_param="prompt")
    lines = _generate_lines(generation, body.model, started, load_s)
    if body.stream:
        return _ndjson(lines)
    return await until_disconnected(request.receive, _collect_generate(lines))


async def _collect_generate(lines: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    text = ""
    async for line in lines:
        text += line.get("response", "")
        out = line
    return {**out, "response": text}


async def _generate_lines(generation: Generation, model: str, started: float,
                          load_s: float) -> AsyncIterator[dict[str, Any]]:
    tokens: list[int] = []
    async for delta in tool_deltas(generation, None):
        tokens += delta.event.token_ids
        line: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "response": delta.text, "done": False}
        if delta.finish:
            line.update(_final(generation, delta.event, started, load_s, _reason(delta.finish)))
            line["context"] = [*generation.prompts[0], *tokens]
        if delta.text or delta.finish:
            yield line


# -- chat --------------------------------------------------------------------------------
def _chat_plan(body: ChatRequest) -> ToolPlan | None:
    if not body.tools:
        if body.tool_choice not in (None, "none", "auto"):
            raise InvalidRequest("tool_choice needs tools", param="tool_choice")
        return None
    return plan_tools(parse_tools(body.tools), body.tool_choice, True)


@router.post("/api/chat", response_model=None)
async def chat(body: ChatRequest, request: Request) -> Any:
    started = time.perf_counter()
    if body.images():
        raise InvalidRequest(f"model '{body.model}' does not support images: it is a text model",
                             param="messages.images")
    plan = await asyncio.to_thread(_chat_plan, body)
    grammar = await asyncio.to_thread(body.grammar)
    if plan is not None and grammar is not None:
        raise InvalidRequest("format and tools cannot be combined", param="format")
    service = _service(request)
    engine, load_s = await _load(service, body)
    if not body.messages:
        return await _load_only(request, body, load_s, "message")
    prompt = await asyncio.to_thread(service.chat_prompt, engine, [m.to_template() for m in body.messages],
                                     body.options.max_tokens(), plan)
    options = _options(body, engine, prompt, plan.grammar if plan else grammar)
    generation = service.start(engine.name, [prompt], options)
    lines = _chat_lines(generation, plan, body.model, started, load_s)
    if body.stream:
        return _ndjson(lines)
    return await until_disconnected(request.receive, _collect_chat(lines))


async def _collect_chat(lines: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    text = ""
    calls: list[dict[str, Any]] = []
    async for line in lines:
        text += line["message"]["content"]
        calls += line["message"].get("tool_calls", [])
        out = line
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    return {**out, "message": message}


def _ollama_call(call: ToolCall, index: int) -> dict[str, Any]:
    return {"id": call.id, "function": {"index": index, "name": call.name, "arguments": call.arguments}}


async def _chat_lines(generation: Generation, plan: ToolPlan | None, model: str, started: float,
                      load_s: float) -> AsyncIterator[dict[str, Any]]:
    count = 0
    async for delta in tool_deltas(generation, plan):
        message: dict[str, Any] = {"role": "assistant", "content": delta.text}
        if delta.calls:
            message["tool_calls"] = [_ollama_call(c, count + i) for i, c in enumerate(delta.calls)]
            count += len(delta.calls)
        line: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "message": message, "done": False}
        if delta.finish:
            line.update(_final(generation, delta.event, started, load_s, _reason(delta.finish)))
        if delta.text or delta.calls or delta.finish:
            yield line


# -- embeddings --------------------------------------------------------------------------
@router.post("/api/embed")
async def embed(body: EmbedRequest, request: Request) -> EmbedResponse:
    inputs = body.inputs()
    if not inputs:
        raise InvalidRequest("input must not be empty", param="input")
    service = _service(request)
    try:
        embedder = await service.embedder(body.model, keep_alive=parse_keep_alive(body.keep_alive))
    except ModelNotFound as exc:
        raise _not_found(body.model) from exc
    if body.dimensions is not None and body.dimensions != embedder.dimensions:
        raise InvalidRequest(f"model '{embedder.name}' produces {embedder.dimensions}-dimensional vectors",
                             param="dimensions")
    result = await until_disconnected(request.receive, service.embed(
        embedder.name, inputs, truncate=body.truncate, keep_alive=parse_keep_alive(body.keep_alive)))
    return EmbedResponse(model=body.model, embeddings=result.vectors, total_duration=_ns(result.total_s),
                         load_duration=_ns(result.load_s), prompt_eval_count=result.prompt_tokens)


@router.post("/api/embeddings")
async def embeddings(body: EmbeddingsRequest, request: Request) -> EmbeddingsResponse:
    service = _service(request)
    try:
        result = await service.embed(body.model, [body.prompt], truncate=True,
                                     keep_alive=parse_keep_alive(body.keep_alive), param="prompt")
    except ModelNotFound as exc:
        raise _not_found(body.model) from exc
    return EmbeddingsResponse(embedding=result.vectors[0])


# -- models ------------------------------------------------------------------------------
def _details(facts: GgufFacts) -> Details:
    family = facts.architecture
    return Details(family=family, families=[family], parameter_size=facts.parameter_size,
                   quantization_level=facts.quantization)


@router.get("/api/tags")
async def tags(request: Request) -> TagsResponse:
    """Every model this server can serve (loaded or not)."""
    service = _service(request)
    registry = service.registry
    entries = []
    for name in service.visible_models():
        try:
            resolved, facts = await registry.facts(name)
        except SlmkitError:
            continue  # e.g. a configured file that is broken: /api/show says why
        entries.append(ModelEntry(name=name, model=name, modified_at=rfc3339(resolved.path.stat().st_mtime),
                                  size=facts.size_bytes, digest=await registry.digest(resolved.path),
                                  details=_details(facts)))
    return TagsResponse(models=entries)


@router.get("/api/ps")
async def ps(request: Request) -> PsResponse:
    """The loaded models, their memory estimate (weights + KV cache) and when they unload."""
    service = _service(request)
    registry = service.registry
    visible = set(service.visible_models())
    out = []
    for entry in registry.loaded():
        if entry.name not in visible:
            continue
        expires = entry.expires_at()
        out.append(RunningEntry(
            name=entry.name, model=entry.name, size=entry.memory_bytes, digest=await registry.digest(entry.path),
            details=_details(entry.facts), context_length=entry.engine.context_length,
            slots=entry.engine.info.get("slots"),
            expires_at=rfc3339(expires if expires is not None else time.time() + _FOREVER_S)))
    return PsResponse(models=out)


@router.get("/api/version")
async def version() -> dict[str, str]:
    return {"version": OLLAMA_API_VERSION, "slmkit": __version__}


class JsonBodyForOllama:
    """Ollama reads every /api body as JSON whatever its Content-Type (``curl -d`` sends a
    form type); this ASGI middleware marks such bodies as JSON so the routes parse them."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/api/") and scope["method"] == "POST":
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        await self.app(scope, receive, send)
