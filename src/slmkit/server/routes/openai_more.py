"""OpenAI routes and helpers beyond plain text: /v1/embeddings, and chat with tool calls."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import APIRouter, Request

from slmkit.errors import InvalidRequest, SlmkitError
from slmkit.server.errors import openai_error_body
from slmkit.server.generation import Generation
from slmkit.server.protocol.openai import (
    AssistantMessage,
    AssistantToolMessage,
    ChatCompletionRequest,
    EmbeddingData,
    EmbeddingRequest,
    EmbeddingResponse,
    EmbeddingUsage,
    FunctionCall,
    ToolCallOut,
    ToolChatChoice,
    ToolChatCompletionResponse,
    Usage,
)
from slmkit.server.services import GenerationService, until_disconnected
from slmkit.server.tools import ToolCall, ToolPlan, collect_tool_choices, parse_tools, plan_tools, tool_deltas

router = APIRouter(tags=["openai"])
MAX_EMBEDDING_INPUTS = 2048


def _service(request: Request) -> GenerationService:
    return request.app.state.service  # type: ignore[no-any-return]


@router.post("/v1/embeddings")
async def embeddings(body: EmbeddingRequest, request: Request) -> EmbeddingResponse:
    """Sentence vectors (unit length). ``dimensions`` is accepted only when it equals the
    model's own; inputs over the model's context are rejected (OpenAI does the same)."""
    inputs = body.inputs()
    if not inputs:
        raise InvalidRequest("input must not be empty", param="input")
    if len(inputs) > MAX_EMBEDDING_INPUTS:
        raise InvalidRequest(f"input may hold at most {MAX_EMBEDDING_INPUTS} items", param="input")
    service = _service(request)
    embedder = await service.embedder(body.model)
    if body.dimensions is not None and body.dimensions != embedder.dimensions:
        raise InvalidRequest(f"model '{embedder.name}' produces {embedder.dimensions}-dimensional vectors and "
                             "cannot shorten them", param="dimensions")
    result = await until_disconnected(request.receive, service.embed(embedder.name, inputs, truncate=False))
    data = [EmbeddingData(index=i, embedding=_encode(v, body.encoding_format)) for i, v in enumerate(result.vectors)]
    usage = EmbeddingUsage(prompt_tokens=result.prompt_tokens, total_tokens=result.prompt_tokens)
    return EmbeddingResponse(data=data, model=result.model, usage=usage)


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


# -- chat with tools ---------------------------------------------------------------------
def tool_plan(body: ChatCompletionRequest) -> ToolPlan | None:
    """The request's tool plan (None for no tools or ``tool_choice: none``); 400 on bad tools."""
    if body.tools is None and body.tool_choice is None:
        return None
    return plan_tools(parse_tools(body.tools), body.tool_choice, body.parallel_tool_calls)


def _tool_call_out(call: ToolCall) -> ToolCallOut:
    return ToolCallOut(id=call.id, function=FunctionCall(name=call.name, arguments=call.arguments_json))


async def tool_chat_response(generation: Generation, plan: ToolPlan, usage_of: Any,
                             fingerprint: str) -> ToolChatCompletionResponse:
    results, usage = await collect_tool_choices(generation, plan)
    choices = [
        ToolChatChoice(index=i, finish_reason=r.finish, message=AssistantToolMessage(
            content=None, tool_calls=[_tool_call_out(c) for c in r.calls]) if r.calls else AssistantMessage(
            content=r.text))
        for i, r in enumerate(results)
    ]
    out: Usage = usage_of(usage)
    return ToolChatCompletionResponse(id=f"chatcmpl-{generation.id}", created=generation.created,
                                  model=generation.model, system_fingerprint=fingerprint, choices=choices,
                                  usage=out)


async def tool_chat_chunks(generation: Generation, plan: ToolPlan, include_usage: bool, usage_of: Any,
                           fingerprint: str) -> AsyncIterator[str]:
    """SSE chunks: text deltas as usual; each completed call as a ``tool_calls`` delta."""
    head = {"id": f"chatcmpl-{generation.id}", "object": "chat.completion.chunk", "created": generation.created,
            "model": generation.model, "system_fingerprint": fingerprint}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        return f"data: {json.dumps({**head, 'choices': [choice]}, ensure_ascii=False)}\n\n"

    for i in range(len(generation.streams)):
        yield chunk(i, {"role": "assistant", "content": ""})
    counts = [0] * len(generation.streams)
    usage = generation.usage()
    try:
        async for delta in tool_deltas(generation, plan):
            usage.add(delta.index, delta.event)
            if delta.text:
                yield chunk(delta.index, {"content": delta.text})
            for call in delta.calls:
                yield chunk(delta.index, {"tool_calls": [{
                    "index": counts[delta.index], "id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json}}]})
                counts[delta.index] += 1
            if delta.finish:
                yield chunk(delta.index, {}, delta.finish)
        if include_usage:
            yield f"data: {json.dumps({**head, 'choices': [], 'usage': usage_of(usage).model_dump()})}\n\n"
    except SlmkitError as exc:
        yield f"data: {json.dumps(openai_error_body(exc))}\n\n"
    yield "data: [DONE]\n\n"
