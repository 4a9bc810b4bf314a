"""The Ollama wire format: NDJSON lines for /api/generate and /api/chat, and whole answers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from slmkit.errors import InternalError, ModelNotFound, SlmkitError
from slmkit.server.protocol.ollama import now_rfc3339
from slmkit.server.tools import ToolCall
from slmkit.server.usecases.run import Delta, Finish, Run

log = logging.getLogger("slmkit.server")


def error_body(exc: SlmkitError) -> dict[str, Any]:
    if isinstance(exc, ModelNotFound) and exc.model is not None:  # Ollama's own wording
        return {"error": f"model '{exc.model}' not found, try pulling it first"}
    return {"error": exc.message}


def ns(seconds: float) -> int:
    return int(seconds * 1e9)


def done_reason(finish: Finish) -> str:
    return "length" if finish is Finish.LENGTH else "stop"


def ndjson_response(lines: AsyncIterator[dict[str, Any]]) -> StreamingResponse:
    async def encode() -> AsyncIterator[str]:
        try:
            async for line in lines:
                yield json.dumps(line, ensure_ascii=False) + "\n"
        except SlmkitError as exc:
            yield json.dumps(error_body(exc)) + "\n"
        except Exception as exc:  # an encoder bug: still an error line, never a cut connection
            log.exception("a stream failed")
            yield json.dumps(error_body(InternalError(f"internal error: {exc.__class__.__name__}"))) + "\n"

    return StreamingResponse(encode(), media_type="application/x-ndjson")


def load_only(model: str, field: str, reason: str, loaded_s: float) -> dict[str, Any]:
    """The answer to an empty prompt: the model was loaded (or unloaded)."""
    empty: Any = "" if field == "response" else {"role": "assistant", "content": ""}
    return {"model": model, "created_at": now_rfc3339(), field: empty, "done": True, "done_reason": reason,
            "load_duration": ns(loaded_s), "total_duration": ns(loaded_s)}


def _final(run: Run, d: Delta, started: float, load_s: float) -> dict[str, Any]:
    assert d.finish is not None
    t = d.timings
    return {"done": True, "done_reason": done_reason(d.finish), "total_duration": ns(time.perf_counter() - started),
            "load_duration": ns(load_s), "prompt_eval_count": run.counts.prompt_tokens,
            "prompt_eval_duration": ns(t.get("prompt_s", 0.0)), "eval_count": d.completion_tokens,
            "eval_duration": ns(t.get("generation_s", 0.0))}


async def generate_lines(run: Run, model: str, started: float, load_s: float,
                         with_context: bool = True) -> AsyncIterator[dict[str, Any]]:
    """One line per piece of text; the final line (``done``) carries none, as Ollama's does."""
    tokens: list[int] = []
    async for d in run.deltas():
        tokens += d.token_ids
        if d.text:
            yield {"model": model, "created_at": now_rfc3339(), "response": d.text, "done": False}
        if d.finish is not None:
            line: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "response": "",
                                    **_final(run, d, started, load_s)}
            if with_context:
                line["context"] = [*run.prompt(0), *tokens]
            yield line


def _call(call: ToolCall, index: int) -> dict[str, Any]:
    return {"id": call.id, "function": {"index": index, "name": call.name, "arguments": call.arguments}}


async def chat_lines(run: Run, model: str, started: float, load_s: float) -> AsyncIterator[dict[str, Any]]:
    """Text and tool calls in ``done: false`` lines; the final line's message is empty."""
    count = 0
    async for d in run.deltas():
        if d.text or d.tool_calls:
            message: dict[str, Any] = {"role": "assistant", "content": d.text}
            if d.tool_calls:
                message["tool_calls"] = [_call(c, count + i) for i, c in enumerate(d.tool_calls)]
                count += len(d.tool_calls)
            yield {"model": model, "created_at": now_rfc3339(), "message": message, "done": False}
        if d.finish is not None:
            yield {"model": model, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": ""},
                   **_final(run, d, started, load_s)}


async def collect_generate(lines: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    text = ""
    async for line in lines:
        text += line.get("response", "")
        out = line
    return {**out, "response": text}


async def collect_chat(lines: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
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
