"""The Anthropic wire format: the Message object, its SSE events, and the error shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from slmkit.errors import Overloaded, ServiceUnavailable, SlmkitError
from slmkit.server.generation import TokenCounts
from slmkit.server.protocol.anthropic import MessageResponse, TextContent, ToolUseContent, Usage
from slmkit.server.tools import ToolCall
from slmkit.server.usecases.run import ChoiceOut, Finish, Run, RunResult

OVERLOADED_STATUS = 529  # Anthropic's status for "overloaded, retry later"
_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}


def error_type(exc: SlmkitError) -> str:
    """Anthropic's error type for one of ours (by status, a full queue or a drain: overloaded)."""
    if isinstance(exc, Overloaded | ServiceUnavailable):
        return "overloaded_error"
    return _TYPES.get(exc.status, "invalid_request_error" if exc.status < 500 else "api_error")


def error_status(exc: SlmkitError) -> int:
    """A full wait queue is 529, as Anthropic answers when it is overloaded; the rest keep theirs."""
    return OVERLOADED_STATUS if isinstance(exc, Overloaded) else exc.status


def error_body(exc: SlmkitError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(exc), "message": exc.message}}


def stop_reason(finish: Finish, stop_sequence: str | None) -> str:
    if finish is Finish.TOOL_CALLS:
        return "tool_use"
    if finish is Finish.LENGTH:
        return "max_tokens"
    return "stop_sequence" if stop_sequence is not None else "end_turn"


def usage(counts: TokenCounts) -> Usage:
    """As Anthropic counts: ``input_tokens`` are the prompt tokens that were not read from the
    cache, ``cache_read_input_tokens`` those that were (the reused prefix)."""
    cached = counts.cached_tokens
    return Usage(input_tokens=counts.prompt_tokens - cached, output_tokens=counts.completion_tokens,
                 cache_read_input_tokens=cached)


def tool_id(call: ToolCall) -> str:
    return "toolu_" + call.id.removeprefix("call_")


def message(result: RunResult) -> MessageResponse:
    run, choice = result.run, result.choices[0]
    content: list[TextContent | ToolUseContent] = [TextContent(text=choice.text)] if choice.text else []
    content += [ToolUseContent(id=tool_id(c), name=c.name, input=c.arguments) for c in choice.tool_calls]
    return MessageResponse(id=f"msg_{run.id}", model=run.model, content=content,
                           stop_reason=stop_reason(choice.finish, choice.stop_sequence),
                           stop_sequence=choice.stop_sequence, usage=usage(run.counts))


# -- streams -------------------------------------------------------------------------------
def sse_response(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _event(kind: str, data: dict[str, Any]) -> str:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data}, ensure_ascii=False)}\n\n"


class _Blocks:
    """The open content block and the next index."""

    def __init__(self) -> None:
        self.next = 0
        self.text_open = False

    def open(self, block: dict[str, Any]) -> str:
        self.text_open = block["type"] == "text"
        return _event("content_block_start", {"index": self.next, "content_block": block})

    def delta(self, delta: dict[str, Any]) -> str:
        return _event("content_block_delta", {"index": self.next, "delta": delta})

    def close(self) -> str:
        self.text_open = False
        self.next += 1
        return _event("content_block_stop", {"index": self.next - 1})

    def text(self, text: str) -> list[str]:
        head = [] if self.text_open else [self.open({"type": "text", "text": ""})]
        return [*head, self.delta({"type": "text_delta", "text": text})]

    def tool_use(self, call: ToolCall) -> list[str]:
        head = [self.close()] if self.text_open else []
        return [*head, self.open({"type": "tool_use", "id": tool_id(call), "name": call.name, "input": {}}),
                self.delta({"type": "input_json_delta", "partial_json": call.arguments_json}), self.close()]


async def message_events(run: Run) -> AsyncIterator[str]:
    """``message_start``, a ``ping``, each content block (start, deltas, stop), ``message_delta``
    with the stop reason and usage, ``message_stop``; a failure is an ``error`` event, the last."""
    start = MessageResponse(id=f"msg_{run.id}", model=run.model, content=[], stop_reason=None, stop_sequence=None,
                            usage=Usage(input_tokens=run.counts.prompt_tokens, output_tokens=0))
    yield _event("message_start", {"message": start.model_dump()})
    yield _event("ping", {})
    blocks, last = _Blocks(), ChoiceOut(index=0)
    cut: str | None = None
    try:
        async for delta in run.deltas():
            for frame in (blocks.text(delta.text) if delta.text else []):
                yield frame
            for call in delta.tool_calls:
                for frame in blocks.tool_use(call):
                    yield frame
            if delta.finish is not None:
                last.finish, last.stop_sequence = delta.finish, delta.stop_sequence
            cut = cut or delta.interrupted
        if blocks.text_open:
            yield blocks.close()
        if cut:
            raise ServiceUnavailable(cut, code="server_shutting_down")
        reason = {"stop_reason": stop_reason(last.finish, last.stop_sequence), "stop_sequence": last.stop_sequence}
        yield _event("message_delta", {"delta": reason, "usage": usage(run.counts).model_dump()})
        yield _event("message_stop", {})
    except SlmkitError as exc:
        yield f"event: error\ndata: {json.dumps(error_body(exc), ensure_ascii=False)}\n\n"
