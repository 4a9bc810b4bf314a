"""The OpenAI wire format: chat.completion / text_completion objects and their SSE chunks."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi.responses import StreamingResponse

from slmkit.engine.base import TokenLogprob
from slmkit.errors import InternalError, ServiceUnavailable, SlmkitError
from slmkit.server.generation import TokenCounts
from slmkit.server.protocol.openai import (
    AssistantMessage,
    AssistantToolMessage,
    ChatChoice,
    ChatCompletionResponse,
    CompletionChoice,
    CompletionResponse,
    CompletionUsage,
    FunctionCall,
    PromptTokensDetails,
    ToolCallOut,
)
from slmkit.server.tools import ToolCall
from slmkit.server.usecases.run import Delta, Finish, Run, RunResult

FINGERPRINT = "slmkit"
log = logging.getLogger("slmkit.server")


def interrupted(reason: str) -> ServiceUnavailable:
    """The error frame after the last chunk of a stream the server ended early (see
    ``engine.admission.interrupt_streams``)."""
    return ServiceUnavailable(reason, code="server_shutting_down")


def error_body(exc: SlmkitError) -> dict[str, Any]:
    return {"error": {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}}


def finish_reason(finish: Finish | None) -> str | None:
    if finish is None:
        return None
    return {Finish.LENGTH: "length", Finish.TOOL_CALLS: "tool_calls"}.get(finish, "stop")


def usage(counts: TokenCounts) -> CompletionUsage:
    prompt, completion = counts.prompt_tokens, counts.completion_tokens
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                 prompt_tokens_details=PromptTokensDetails(cached_tokens=counts.cached_tokens))


def chat_logprobs(items: list[TokenLogprob]) -> dict[str, Any]:
    content = [{"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes,
                "top_logprobs": [{"token": t, "logprob": v, "bytes": b} for t, v, b in lp.top]} for lp in items]
    return {"content": content, "refusal": None}


def completion_logprobs(items: list[TokenLogprob], offset: int = 0,
                        prompt: list[TokenLogprob] | None = None) -> dict[str, Any]:
    """The legacy ``logprobs`` object. With ``prompt`` (echo), the prompt's tokens come first,
    the first one without a logprob (``null``), as OpenAI's echo did, and the offsets run from
    0 over the prompt's tokens and on over the generated ones (as vLLM counts them)."""
    offsets = []
    if prompt:
        offset = 0
        for lp in prompt:
            offsets.append(offset)
            offset += len(lp.token)
    for lp in items:
        offsets.append(offset)
        offset += len(lp.token)
    both = [*(prompt or []), *items]
    return {"tokens": [lp.token for lp in both], "token_logprobs": [lp.logprob for lp in both],
            "top_logprobs": [None if lp.logprob is None else _top_with_chosen(lp) for lp in both],
            "text_offset": offsets}


def _top_with_chosen(lp: TokenLogprob) -> dict[str, float | None]:
    """The legacy completions API always lists the sampled token among the alternatives, so a
    position has up to ``logprobs`` + 1 entries (``logprobs: 0`` gives the sampled one alone);
    chat's ``top_logprobs`` lists exactly the top ones."""
    top: dict[str, float | None] = {t: v for t, v, _ in lp.top}
    top.setdefault(lp.token, lp.logprob)
    return top


def tool_call(call: ToolCall) -> ToolCallOut:
    return ToolCallOut(id=call.id, function=FunctionCall(name=call.name, arguments=call.arguments_json))


# -- whole answers ----------------------------------------------------------------------
def chat_completion(result: RunResult, logprobs: bool) -> ChatCompletionResponse:
    run = result.run
    choices = []
    for c in result.choices:
        message: AssistantMessage = (AssistantToolMessage(content=c.text or None, tool_calls=[tool_call(t) for t in
                                                                                              c.tool_calls])
                                     if c.tool_calls else AssistantMessage(content=c.text))
        choices.append(ChatChoice(index=c.index, message=message, finish_reason=finish_reason(c.finish) or "stop",
                                  logprobs=chat_logprobs(c.logprobs) if logprobs else None))
    return ChatCompletionResponse(id=f"chatcmpl-{run.id}", created=run.created, model=run.model,
                                  system_fingerprint=FINGERPRINT, choices=choices, usage=usage(run.counts))


def text_completion(result: RunResult, logprobs: bool) -> CompletionResponse:
    run = result.run
    choices = [CompletionChoice(index=c.index, text=run.echo[c.index] + c.text, finish_reason=finish_reason(c.finish),
                                logprobs=completion_logprobs(c.logprobs, len(run.echo[c.index]), c.prompt_logprobs)
                                if logprobs else None)
               for c in result.choices]
    return CompletionResponse(id=f"cmpl-{run.id}", created=run.created, model=run.model,
                              system_fingerprint=FINGERPRINT, choices=choices, usage=usage(run.counts))


# -- streams -------------------------------------------------------------------------------
def sse_response(frames: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(frames, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _sse(payload: dict[str, Any] | str) -> str:
    text = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {text}\n\n"


def _head(run: Run, prefix: str, obj: str) -> dict[str, Any]:
    return {"id": f"{prefix}-{run.id}", "object": obj, "created": run.created, "model": run.model,
            "system_fingerprint": FINGERPRINT}


async def chat_chunks(run: Run, include_usage: bool, logprobs: bool) -> AsyncIterator[str]:
    """A role frame per choice, content and tool-call deltas, a finish frame per choice, the
    usage frame if asked, then ``[DONE]``; a failure sends an error frame before ``[DONE]``."""
    head = _head(run, "chatcmpl", "chat.completion.chunk")
    calls = [0] * run.choices

    def frame(index: int, delta: dict[str, Any], finish: str | None = None,
              lps: list[TokenLogprob] | None = None) -> str:
        choice = {"index": index, "delta": delta, "finish_reason": finish,
                  "logprobs": chat_logprobs(lps) if logprobs and lps else None}
        return _sse({**head, "choices": [choice]})

    def frames(d: Delta) -> list[str]:
        out = []
        if d.text or (d.logprobs and not d.tool_calls):
            out.append(frame(d.index, {"content": d.text}, lps=d.logprobs))
        for call in d.tool_calls:
            out.append(frame(d.index, {"tool_calls": [{"index": calls[d.index], **tool_call(call).model_dump()}]},
                             lps=d.logprobs))
            calls[d.index] += 1
        if d.finish is not None:
            out.append(frame(d.index, {}, finish_reason(d.finish)))
        return out

    opening = [frame(i, {"role": "assistant", "content": ""}) for i in range(run.choices)]
    async for text in _stream(run, head, include_usage, opening, frames):
        yield text


async def completion_chunks(run: Run, include_usage: bool, logprobs: bool) -> AsyncIterator[str]:
    """``text_completion`` frames (echo first), then ``[DONE]``; ``text_offset`` runs on
    across the chunks of a choice, as in the whole answer. When the prompt is scored (echo
    with logprobs), the echo waits for its logprobs and goes out in the same frame."""
    head = _head(run, "cmpl", "text_completion")
    offsets = [len(e) for e in run.echo]
    scored = logprobs and run.prompt_logprobs

    def frame(index: int, text: str, finish: str | None = None, lps: list[TokenLogprob] | None = None,
              prompt: list[TokenLogprob] | None = None) -> str:
        body = None
        if logprobs and (lps or prompt):
            body = completion_logprobs(lps or [], offsets[index], prompt)
            start = 0 if prompt else offsets[index]  # a scored prompt's offsets start at 0
            offsets[index] = start + sum(len(lp.token) for lp in [*(prompt or []), *(lps or [])])
        return _sse({**head, "choices": [{"index": index, "text": text, "finish_reason": finish, "logprobs": body}]})

    def frames(d: Delta) -> list[str]:
        text = run.echo[d.index] + d.text if scored and d.prompt_logprobs else d.text
        if text or d.logprobs or d.prompt_logprobs or d.finish is not None:
            return [frame(d.index, text, finish_reason(d.finish), d.logprobs, d.prompt_logprobs)]
        return []

    opening = [] if scored else [frame(i, text) for i, text in enumerate(run.echo) if text]
    async for text in _stream(run, head, include_usage, opening, frames):
        yield text


async def _stream(run: Run, head: dict[str, Any], include_usage: bool, opening: list[str],
                  frames: Callable[[Delta], list[str]]) -> AsyncIterator[str]:
    """The opening frames, each delta's frames, the usage frame if asked, the error frame of a
    drain that ended a choice early, then ``[DONE]``; a failure sends its error frame first."""
    cut: str | None = None  # why a choice was ended early (the server shutting down)
    try:
        for text in opening:
            yield text
        async for delta in run.deltas():
            for text in frames(delta):
                yield text
            cut = cut or delta.interrupted
        if include_usage:
            yield _sse({**head, "choices": [], "usage": usage(run.counts).model_dump()})
        if cut:
            yield _sse(error_body(interrupted(cut)))
    except SlmkitError as exc:
        yield _sse(error_body(exc))
    except Exception as exc:  # an encoder bug: still an error frame and [DONE], never a cut connection
        log.exception("stream %s failed", run.id)
        yield _sse(error_body(InternalError(f"internal error: {exc.__class__.__name__}")))
    yield _sse("[DONE]")
