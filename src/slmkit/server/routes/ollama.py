"""Ollama routes (``/api/...``): a thin adapter over the same GenerationService as /v1.

The store routes (pull, delete, copy, create) live in ``ollama_store.py``."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from slmkit import __version__
from slmkit.engine.llamacpp.metadata import GgufFacts
from slmkit.errors import SlmkitError
from slmkit.server.encode import ollama as wire
from slmkit.server.policy import model_route, open_route
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
    rfc3339,
)
from slmkit.server.routes.common import service, until_disconnected
from slmkit.server.usecases.calls import ChatCall
from slmkit.store.aliases import tagged

router = APIRouter(tags=["ollama"])
# The Ollama API version whose behaviour these routes follow (clients gate features on it).
OLLAMA_API_VERSION = "0.12.0"
_FOREVER_S = 100 * 365 * 24 * 3600.0


async def _load_only(request: Request, body: OllamaRequest, field: str) -> dict[str, Any]:
    """An empty prompt loads the model, or with keep_alive 0 unloads it (as Ollama does)."""
    started = time.perf_counter()
    keep = body.keep_alive_s()
    await service(request).load(body.model, keep_alive=keep)
    if keep == 0:
        await service(request).unload(body.model)
    return wire.load_only(body.model, field, "unload" if keep == 0 else "load", time.perf_counter() - started)


@router.post("/api/generate", response_model=None)
@model_route()
async def generate(body: GenerateRequest, request: Request) -> Any:
    started = time.perf_counter()
    call = body.to_call()
    if not body.prompt:  # with a system prompt alone too, as Ollama does
        return await _load_only(request, body, "response")
    run = await service(request).chat(call) if isinstance(call, ChatCall) else await service(request).complete(call)
    lines = wire.generate_lines(run, body.model, started, run.load_s, with_context=not body.raw)
    if body.stream:
        return wire.ndjson_response(lines)
    return await until_disconnected(request, wire.collect_generate(lines))


@router.post("/api/chat", response_model=None)
@model_route()
async def chat(body: ChatRequest, request: Request) -> Any:
    started = time.perf_counter()
    call = body.to_call()
    if not body.messages:
        return await _load_only(request, body, "message")
    run = await service(request).chat(call)
    lines = wire.chat_lines(run, body.model, started, run.load_s)
    if body.stream:
        return wire.ndjson_response(lines)
    return await until_disconnected(request, wire.collect_chat(lines))


# -- embeddings --------------------------------------------------------------------------
@router.post("/api/embed")
@model_route(model_kind="embedding", body="batch")
async def embed(body: EmbedRequest, request: Request) -> EmbedResponse:
    result = await until_disconnected(request, service(request).embed(body.to_call()))
    return EmbedResponse(model=body.model, embeddings=result.vectors, total_duration=wire.ns(result.total_s),
                         load_duration=wire.ns(result.load_s), prompt_eval_count=result.prompt_tokens)


@router.post("/api/embeddings")
@model_route(model_kind="embedding")
async def embeddings(body: EmbeddingsRequest, request: Request) -> EmbeddingsResponse:
    result = await until_disconnected(request, service(request).embed(body.to_call()))
    return EmbeddingsResponse(embedding=result.vectors[0])


# -- models ------------------------------------------------------------------------------
def _details(facts: GgufFacts) -> Details:
    family = facts.architecture
    return Details(family=family, families=[family], parameter_size=facts.parameter_size,
                   quantization_level=facts.quantization)


@router.api_route("/api/tags", methods=["GET", "HEAD"])
@open_route()
async def tags(request: Request) -> TagsResponse:
    """Every model this server can serve (loaded or not)."""
    svc = service(request)
    registry = svc.registry
    entries = []
    for name in svc.visible_models():
        try:
            resolved, facts = await registry.facts(name)
        except SlmkitError:
            continue  # e.g. a configured file that is broken: /api/show says why
        digest = resolved.digest.removeprefix("sha256:") if resolved.digest else await registry.digest(resolved.path)
        entries.append(ModelEntry(name=tagged(name), model=tagged(name), size=facts.size_bytes, digest=digest,
                                  modified_at=rfc3339(resolved.path.stat().st_mtime), details=_details(facts)))
    return TagsResponse(models=entries)


@router.get("/api/ps")
@open_route()
async def ps(request: Request) -> PsResponse:
    """The loaded models, their memory estimate (weights + KV cache) and when they unload."""
    svc = service(request)
    registry = svc.registry
    visible = set(svc.visible_models())
    out = []
    for entry in registry.loaded():
        if entry.name not in visible:
            continue
        expires = entry.expires_at()
        out.append(RunningEntry(
            name=tagged(entry.name), model=tagged(entry.name), size=entry.memory_bytes,
            digest=await registry.digest(entry.path), details=_details(entry.facts),
            context_length=entry.engine.context_length,
            slots=entry.engine.info.slots,
            expires_at=rfc3339(expires if expires is not None else time.time() + _FOREVER_S)))
    return PsResponse(models=out)


@router.api_route("/api/version", methods=["GET", "HEAD"])
@open_route()
async def version() -> dict[str, str]:
    return {"version": OLLAMA_API_VERSION, "slmkit": __version__}
