"""Encoders for the OpenAI API: usage, logprobs, and the SSE chunk streams."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from slmkit.engine.base import FinishReason, TokenLogprob
from slmkit.errors import ServiceUnavailable, SlmkitError
from slmkit.server.errors import openai_error_body
from slmkit.server.generation import Generation, raise_if_failed
from slmkit.server.generation import Usage as UsageCounts
from slmkit.server.protocol.openai import PromptTokensDetails, Usage

FINGERPRINT = "slmkit"


def finish_reason(reason: FinishReason | None) -> str:
    return "length" if reason is FinishReason.LENGTH else "stop"


def interrupted(reason: str) -> ServiceUnavailable:
    """The error frame after the last chunk of a stream the server ended early (see
    ``engine.admission.interrupt_streams``)."""
    return ServiceUnavailable(reason, code="server_shutting_down")


def usage(counts: UsageCounts) -> Usage:
    prompt, completion = counts.prompt_tokens, counts.completion_tokens
    return Usage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=counts.cached_tokens))


def chat_logprobs(items: list[TokenLogprob]) -> dict[str, Any]:
    return {
        "content": [
            {"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes,
             "top_logprobs": [{"token": t, "logprob": v, "bytes": b} for t, v, b in lp.top]}
            for lp in items
        ],
        "refusal": None,
    }


def completion_logprobs(items: list[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    offsets = []
    for lp in items:
        offsets.append(offset)
        offset += len(lp.token)
    return {
        "tokens": [lp.token for lp in items],
        "token_logprobs": [lp.logprob for lp in items],
        "top_logprobs": [{t: v for t, v, _ in lp.top} for lp in items],
        "text_offset": offsets,
    }


def sse_response(chunks: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(chunks, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(payload: str) -> str:
    return f"data: {payload}\n\n"


def _head(generation: Generation, prefix: str, obj: str) -> dict[str, Any]:
    return {"id": f"{prefix}-{generation.id}", "object": obj, "created": generation.created,
            "model": generation.model, "system_fingerprint": FINGERPRINT}


async def chat_chunks(generation: Generation, include_usage: bool, logprobs: bool) -> AsyncIterator[str]:
    """`chat.completion.chunk` frames: a role frame per choice, content deltas, a finish
    frame per choice, the usage frame if asked, then `[DONE]`."""
    head = _head(generation, "chatcmpl", "chat.completion.chunk")

    def frame(index: int, delta: dict[str, Any], finish: str | None = None,
              lps: list[TokenLogprob] | None = None) -> str:
        choice = {"index": index, "delta": delta, "finish_reason": finish,
                  "logprobs": chat_logprobs(lps) if logprobs and lps else None}
        return _sse(json.dumps({**head, "choices": [choice]}, ensure_ascii=False))

    for i in range(len(generation.streams)):
        yield frame(i, {"role": "assistant", "content": ""})
    counts = generation.usage()
    cut: list[str] = []  # why a stream was ended early (the server shutting down)
    try:
        async for index, event in generation.events():
            raise_if_failed(event)
            counts.add(index, event)
            if event.text or event.logprobs:
                yield frame(index, {"content": event.text}, lps=event.logprobs)
            if event.finish_reason is not None:
                yield frame(index, {}, finish_reason(event.finish_reason))
                cut += [event.error] if event.error else []
        if include_usage:
            yield _sse(json.dumps({**head, "choices": [], "usage": usage(counts).model_dump()}))
        if cut:
            yield _sse(json.dumps(openai_error_body(interrupted(cut[0]))))
    except SlmkitError as exc:
        yield _sse(json.dumps(openai_error_body(exc)))
    yield _sse("[DONE]")


async def completion_chunks(generation: Generation, include_usage: bool, echo: list[str],
                            logprobs: bool) -> AsyncIterator[str]:
    """`text_completion` frames (the same shape as the non-streamed object), then `[DONE]`."""
    head = _head(generation, "cmpl", "text_completion")

    def frame(index: int, text: str, finish: str | None = None, lps: list[TokenLogprob] | None = None) -> str:
        choice = {"index": index, "text": text, "finish_reason": finish,
                  "logprobs": completion_logprobs(lps) if logprobs and lps else None}
        return _sse(json.dumps({**head, "choices": [choice]}, ensure_ascii=False))

    counts = generation.usage()
    cut: list[str] = []
    try:
        for i, text in enumerate(echo):
            if text:
                yield frame(i, text)
        async for index, event in generation.events():
            raise_if_failed(event)
            counts.add(index, event)
            if event.text or event.logprobs or event.finish_reason is not None:
                finish = finish_reason(event.finish_reason) if event.finish_reason is not None else None
                yield frame(index, event.text, finish, event.logprobs)
                cut += [event.error] if event.error and finish else []
        if include_usage:
            yield _sse(json.dumps({**head, "choices": [], "usage": usage(counts).model_dump()}))
        if cut:
            yield _sse(json.dumps(openai_error_body(interrupted(cut[0]))))
    except SlmkitError as exc:
        yield _sse(json.dumps(openai_error_body(exc)))
    yield _sse("[DONE]")
