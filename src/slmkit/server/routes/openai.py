"""OpenAI routes (``/v1``): each turns its body into a neutral call, hands it to the use-case
layer and encodes the run (see ``server.encode.openai``)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from slmkit.server.encode import openai as wire
from slmkit.server.policy import model_route, open_route
from slmkit.server.protocol.openai import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    ModelCard,
    ModelList,
)
from slmkit.server.routes.common import service, until_disconnected

router = APIRouter(tags=["openai"])


@router.post("/v1/chat/completions", response_model=None)
@model_route()
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    run = await service(request).chat(body.to_call())
    if body.stream:
        return wire.sse_response(wire.chat_chunks(run, body.include_usage, body.logprobs))
    return wire.chat_completion(await until_disconnected(request, run.collect()), body.logprobs)


@router.post("/v1/completions", response_model=None)
@model_route()
async def completions(body: CompletionRequest, request: Request) -> Any:
    run = await service(request).complete(body.to_call())
    logprobs = body.logprobs is not None
    if body.stream:
        return wire.sse_response(wire.completion_chunks(run, body.include_usage, logprobs))
    return wire.text_completion(await until_disconnected(request, run.collect()), logprobs)


@router.post("/v1/embeddings")
@model_route(model_kind="embedding", body="batch")
async def embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingResponse:
    """Sentence vectors (unit length). ``dimensions`` is accepted only when it equals the
    model's own; inputs over the model's context are rejected (OpenAI does the same)."""
    result = await until_disconnected(request, service(request).embed(body.to_call()))
    data = [EmbeddingData(index=i, embedding=_encode(v, body.encoding_format)) for i, v in enumerate(result.vectors)]
    usage = EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
    return EmbeddingResponse(data=data, model=result.model, usage=usage)


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


@router.get("/v1/models")
@open_route()
async def list_models(request: Request) -> ModelList:
    svc = service(request)
    return ModelList(data=[ModelCard(id=name, created=svc.registry.loaded_at(name)) for name in svc.visible_models()])


@router.get("/v1/models/{model_id:path}")
@model_route(path_param="model_id")
async def get_model(model_id: str, request: Request) -> ModelCard:
    svc = service(request)
    name = svc.registry.resolve(model_id).name
    svc.check_scope(name)
    return ModelCard(id=name, created=svc.registry.loaded_at(name))
