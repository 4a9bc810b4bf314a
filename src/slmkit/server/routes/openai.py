"""OpenAI routes: /v1/chat/completions, /v1/completions, /v1/models (embeddings and tool calls:
openai_more.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from slmkit.engine.base import FinishReason
from slmkit.errors import InvalidRequest, SlmkitError
from slmkit.server.errors import openai_error_body
from slmkit.server.protocol.openai import (
    AssistantMessage,
    ChatChoice,
    ChatCompletionRequest,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionRequest,
    CompletionResponse,
    ModelCard,
    ModelList,
    PromptTokensDetails,
    SamplingFields,
    Usage,
)
from slmkit.server.routes import openai_more
from slmkit.server.services import GenerateOptions, Generation, GenerationService, raise_if_failed
from slmkit.server.services import Usage as UsageCounts

router = APIRouter(tags=["openai"])
FINGERPRINT = "slmkit"


def _service(request: Request) -> GenerationService:
    return request.app.state.service  # type: ignore[no-any-return]


def _options(body: SamplingFields, max_tokens: int | None) -> GenerateOptions:
    return GenerateOptions(sampling=body.sampling(), max_tokens=max_tokens, stop=body.stop_list(), n=body.n)


def _finish(reason: FinishReason | None) -> str:
    return "length" if reason is FinishReason.LENGTH else "stop"


def _usage(counts: UsageCounts) -> Usage:
    prompt, completion = counts.prompt_tokens, counts.completion_tokens
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=counts.cached_tokens))


def _sse(payload: Any) -> str:
    return f"data: {payload}\n\n"


def _max_tokens(request: Request, wanted: int | None) -> int | None:
    cap: int = request.app.state.settings.server.max_tokens_cap
    if wanted is not None and wanted > cap:
        raise InvalidRequest(f"max_tokens may be at most {cap}", param="max_tokens")
    return wanted


def _check_n(request: Request, n: int) -> None:
    cap: int = request.app.state.settings.server.max_n
    if n > cap:
        raise InvalidRequest(f"n may be at most {cap}", param="n")


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    service = _service(request)
    _check_n(request, body.n)
    plan = openai_more.tool_plan(body)
    engine = await service.load(body.model)
    prompt = service.chat_prompt(engine, [m.to_template() for m in body.messages], plan)
    options = _options(body, _max_tokens(request, body.token_limit()))
    if plan is not None:
        options.sampling = replace(options.sampling, grammar=plan.grammar)
    generation = service.start(engine.name, [prompt], options)
    if plan is not None and body.stream:
        return _stream(openai_more.tool_chat_chunks(generation, plan, body.include_usage, _usage, FINGERPRINT))
    if plan is not None:
        return await openai_more.tool_chat_response(generation, plan, _usage, FINGERPRINT)
    if body.stream:
        return _stream(_chat_chunks(generation, body.include_usage))
    result = await service.collect(generation)
    return ChatCompletionResponse(
        id=f"chatcmpl-{generation.id}", created=generation.created, model=generation.model,
        system_fingerprint=FINGERPRINT,
        choices=[ChatChoice(index=i, message=AssistantMessage(content=c.text), finish_reason=_finish(c.finish_reason))
                 for i, c in enumerate(result.choices)],
        usage=_usage(result.usage),
    )


def _stream(chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _chat_chunks(generation: Generation, include_usage: bool) -> AsyncIterator[str]:
    head = {"id": f"chatcmpl-{generation.id}", "object": "chat.completion.chunk", "created": generation.created,
            "model": generation.model, "system_fingerprint": FINGERPRINT}

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
        return _sse(json.dumps({**head, "choices": [choice]}, ensure_ascii=False))

    for i in range(len(generation.streams)):
        yield chunk(i, {"role": "assistant", "content": ""})
    usage = generation.usage()
    try:
        async for index, event in generation.events():
            raise_if_failed(event)
            usage.add(index, event)
            if event.text:
                yield chunk(index, {"content": event.text})
            if event.finish_reason is not None:
                yield chunk(index, {}, _finish(event.finish_reason))
        if include_usage:
            yield _sse(json.dumps({**head, "choices": [], "usage": _usage(usage).model_dump()}))
    except SlmkitError as exc:
        yield _sse(json.dumps(openai_error_body(exc)))
    yield _sse("[DONE]")


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Any:
    service = _service(request)
    _check_n(request, body.n)
    if body.suffix:
        raise InvalidRequest("suffix (fill-in-the-middle) is not supported", param="suffix")
    engine = await service.load(body.model)
    prompts = _completion_prompts(engine, body.prompt)
    generation = service.start(engine.name, prompts, _options(body, _max_tokens(request, body.token_limit())),
                               prompt_param="prompt")
    echo = [engine.detokenize(p) if body.echo else "" for p in generation.prompts]
    if body.stream:
        return _stream(_completion_chunks(generation, body.include_usage, echo))
    result = await service.collect(generation)
    return CompletionResponse(
        id=f"cmpl-{generation.id}", created=generation.created, model=generation.model,
        system_fingerprint=FINGERPRINT,
        choices=[CompletionChoice(index=i, text=echo[i] + c.text, finish_reason=_finish(c.finish_reason))
                 for i, c in enumerate(result.choices)],
        usage=_usage(result.usage),
    )


def _completion_prompts(engine: Any, prompt: str | list[str] | list[int] | list[list[int]]) -> list[list[int]]:
    if isinstance(prompt, str):
        items: list[Any] = [prompt]
    elif prompt and all(isinstance(t, int) for t in prompt):
        items = [prompt]
    else:
        items = list(prompt)
    if not items:
        raise InvalidRequest("prompt must not be empty", param="prompt")
    out = []
    for item in items:
        tokens = engine.tokenize(item, add_special=True, parse_special=False) if isinstance(item, str) else list(item)
        if any(not 0 <= t < engine.info["vocab_size"] for t in tokens):
            raise InvalidRequest("prompt contains a token id outside the vocabulary", param="prompt")
        out.append(tokens)
    return out


async def _completion_chunks(generation: Generation, include_usage: bool, echo: list[str]) -> AsyncIterator[str]:
    head = {"id": f"cmpl-{generation.id}", "object": "text_completion", "created": generation.created,
            "model": generation.model, "system_fingerprint": FINGERPRINT}

    def chunk(index: int, text: str, finish: str | None = None) -> str:
        choice = {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
        return _sse(json.dumps({**head, "choices": [choice]}, ensure_ascii=False))

    usage = generation.usage()
    try:
        for i, text in enumerate(echo):
            if text:
                yield chunk(i, text)
        async for index, event in generation.events():
            raise_if_failed(event)
            usage.add(index, event)
            if event.text or event.finish_reason is not None:
                finish = _finish(event.finish_reason) if event.finish_reason is not None else None
                yield chunk(index, event.text, finish)
        if include_usage:
            yield _sse(json.dumps({**head, "choices": [], "usage": _usage(usage).model_dump()}))
    except SlmkitError as exc:
        yield _sse(json.dumps(openai_error_body(exc)))
    yield _sse("[DONE]")


@router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    registry = _service(request).registry
    return ModelList(data=[ModelCard(id=name, created=registry.loaded_at(name)) for name in registry.names()])


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> ModelCard:
    registry = _service(request).registry
    name = registry.resolve(model_id).name
    return ModelCard(id=name, created=registry.loaded_at(name))
