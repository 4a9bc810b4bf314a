"""OpenAI routes: /v1/chat/completions, /v1/completions, /v1/models (embeddings and tool calls:
openai_more.py)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request

from slmkit.engine.base import Engine
from slmkit.errors import InvalidRequest
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
)
from slmkit.server.routes import openai_more
from slmkit.server.routes.openai_encode import (
    FINGERPRINT,
    chat_chunks,
    chat_logprobs,
    completion_chunks,
    completion_logprobs,
    finish_reason,
    sse_response,
    usage,
)
from slmkit.server.services import GenerateOptions, GenerationService, until_disconnected

router = APIRouter(tags=["openai"])


def _service(request: Request) -> GenerationService:
    return request.app.state.service  # type: ignore[no-any-return]


def _options(request: Request, body: ChatCompletionRequest | CompletionRequest) -> GenerateOptions:
    """Check the server's caps, then turn the body into engine terms (nothing reaches the
    engine when any of this fails)."""
    server = request.app.state.settings.server
    max_tokens = body.token_limit()
    if max_tokens is not None and max_tokens > server.max_tokens_cap:
        raise InvalidRequest(f"max_tokens may be at most {server.max_tokens_cap}", param="max_tokens")
    if body.n > server.max_n:
        raise InvalidRequest(f"n may be at most {server.max_n}", param="n")
    return GenerateOptions(sampling=body.sampling(), max_tokens=max_tokens, stop=body.stop_list(), n=body.n,
                           logprobs=body.logprob_count())


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    service = _service(request)
    engine = await service.load(body.model)
    body = service.with_profile_defaults(engine.name, body)
    options = await asyncio.to_thread(_options, request, body)  # grammars are built off the event loop
    plan = await asyncio.to_thread(openai_more.tool_plan, body)
    if plan is not None and options.sampling.grammar is not None:
        raise InvalidRequest("response_format and tools cannot be combined", param="response_format")
    service.check_logit_bias(engine, options.sampling.logit_bias)
    prompt = await asyncio.to_thread(service.chat_prompt, engine, [m.to_template() for m in body.messages],
                                     options.max_tokens, plan)
    if plan is not None:
        options.sampling = replace(options.sampling, grammar=plan.grammar)
    generation = service.start(engine.name, [prompt], options)
    if plan is not None and body.stream:
        return sse_response(openai_more.tool_chat_chunks(generation, plan, body.include_usage, usage, FINGERPRINT))
    if plan is not None:
        return await until_disconnected(request.receive,
                                        openai_more.tool_chat_response(generation, plan, usage, FINGERPRINT))
    if body.stream:
        return sse_response(chat_chunks(generation, body.include_usage, body.logprobs))
    result = await until_disconnected(request.receive, service.collect(generation))
    choices = [
        ChatChoice(index=i, message=AssistantMessage(content=c.text), finish_reason=finish_reason(c.finish_reason),
                   logprobs=chat_logprobs(c.logprobs) if body.logprobs else None)
        for i, c in enumerate(result.choices)
    ]
    return ChatCompletionResponse(id=f"chatcmpl-{generation.id}", created=generation.created,
                                  model=generation.model, system_fingerprint=FINGERPRINT, choices=choices,
                                  usage=usage(result.usage))


@router.post("/v1/completions", response_model=None)
async def completions(body: CompletionRequest, request: Request) -> Any:
    service = _service(request)
    if body.suffix:
        raise InvalidRequest("suffix (fill-in-the-middle) is not supported", param="suffix")
    engine = await service.load(body.model)
    body = service.with_profile_defaults(engine.name, body)
    options = await asyncio.to_thread(_options, request, body)
    service.check_logit_bias(engine, options.sampling.logit_bias)
    prompts = await asyncio.to_thread(_completion_prompts, engine, body.prompt)
    generation = service.start(engine.name, prompts, options, prompt_param="prompt")
    echo = [engine.detokenize(prompts[i // body.n]) if body.echo else "" for i in range(len(generation.streams))]
    want_logprobs = body.logprobs is not None
    if body.stream:
        return sse_response(completion_chunks(generation, body.include_usage, echo, want_logprobs))
    result = await until_disconnected(request.receive, service.collect(generation))
    choices = [
        CompletionChoice(index=i, text=echo[i] + c.text, finish_reason=finish_reason(c.finish_reason),
                         logprobs=completion_logprobs(c.logprobs, len(echo[i])) if want_logprobs else None)
        for i, c in enumerate(result.choices)
    ]
    return CompletionResponse(id=f"cmpl-{generation.id}", created=generation.created, model=generation.model,
                              system_fingerprint=FINGERPRINT, choices=choices, usage=usage(result.usage))


def _completion_prompts(engine: Engine, prompt: str | list[str] | list[int] | list[list[int]]) -> list[list[int]]:
    if isinstance(prompt, str):
        items: list[Any] = [prompt]
    elif prompt and all(isinstance(t, int) for t in prompt):
        items = [prompt]
    else:
        items = list(prompt)
    if not items:
        raise InvalidRequest("prompt must not be empty", param="prompt")
    vocab = int(engine.info["vocab_size"])
    out = []
    for item in items:
        tokens = engine.tokenize(item, add_special=True, parse_special=False) if isinstance(item, str) else list(item)
        if any(not 0 <= t < vocab for t in tokens):
            raise InvalidRequest("prompt contains a token id outside the vocabulary", param="prompt")
        out.append(tokens)
    return out


@router.get("/v1/models")
async def list_models(request: Request) -> ModelList:
    service = _service(request)
    return ModelList(data=[ModelCard(id=name, created=service.registry.loaded_at(name))
                           for name in service.visible_models()])


@router.get("/v1/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> ModelCard:
    service = _service(request)
    name = service.registry.resolve(model_id).name
    service.check_scope(name)
    return ModelCard(id=name, created=service.registry.loaded_at(name))
