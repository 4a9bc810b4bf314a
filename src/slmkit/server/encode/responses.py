"""The OpenAI Responses wire format: a ``Run`` as a Response object, or as semantic SSE events.

One ``Assembler`` reads the run's deltas for both: it builds the Response object (``output``
items, ``status``, ``usage``) and says, step by step, which events describe the change; the
whole answer simply drops the events. Event order (each with a ``sequence_number``):
``response.created``, ``response.in_progress``, then per output item ``output_item.added``,
(``content_part.added``, ``output_text.delta``..., ``output_text.done``, ``content_part.done``)
or (``function_call_arguments.delta``, ``.done``), ``output_item.done``; last
``response.completed`` | ``response.incomplete`` | ``response.failed``."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from slmkit.engine.base import TokenLogprob
from slmkit.errors import SlmkitError
from slmkit.server.encode.openai import interrupted
from slmkit.server.protocol.responses import new_id
from slmkit.server.tools import ToolCall
from slmkit.server.usecases.run import Delta, Finish, Run

Event = dict[str, Any]
OnDone = Callable[[dict[str, Any]], Awaitable[None]]


def usage(run: Run) -> dict[str, Any]:
    counts = run.counts
    return {"input_tokens": counts.prompt_tokens,
            "input_tokens_details": {"cached_tokens": counts.cached_tokens, "cache_write_tokens": 0},
            "output_tokens": counts.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": counts.prompt_tokens + counts.completion_tokens}


def logprobs(items: list[TokenLogprob]) -> list[dict[str, Any]]:
    return [{"token": lp.token, "logprob": lp.logprob, "bytes": lp.bytes,
             "top_logprobs": [{"token": t, "logprob": v, "bytes": b} for t, v, b in lp.top]} for lp in items]


def error_code(exc: SlmkitError) -> str:
    """The Response object's ``error.code`` (OpenAI's short list) for a failure."""
    if exc.status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if exc.status < 500 else "server_error"


class Assembler:
    """The Response object of one run, built delta by delta, and the events of each step."""

    def __init__(self, run: Run, head: dict[str, Any], with_logprobs: bool = False) -> None:
        self.run = run
        self.with_logprobs = with_logprobs
        self.response: dict[str, Any] = {
            "id": f"resp_{run.id}", "object": "response", "created_at": run.created, "status": "in_progress",
            "completed_at": None, "error": None, "incomplete_details": None, "model": run.model, "output": [],
            **head}
        self.sequence = 0
        self.message: dict[str, Any] | None = None  # the open message item
        self.finish: Finish | None = None
        self.cut: str | None = None  # why the server ended the answer early (shutting down)

    def event(self, kind: str, **fields: Any) -> Event:
        out = {"type": kind, "sequence_number": self.sequence, **copy.deepcopy(fields)}
        self.sequence += 1
        return out

    def opening(self) -> list[Event]:
        return [self.event("response.created", response=self.response),
                self.event("response.in_progress", response=self.response)]

    def feed(self, delta: Delta) -> list[Event]:
        events: list[Event] = []
        if delta.text or (delta.logprobs and not delta.tool_calls):
            events += self._text(delta.text, delta.logprobs)
        for call in delta.tool_calls:
            events += self._call(call)
        if delta.finish is not None:
            self.finish, self.cut = delta.finish, delta.interrupted
        return events

    def closing(self) -> list[Event]:
        """The last events; the response's status, details and usage are final after this."""
        if self.cut:
            return self.failed(interrupted(self.cut))
        events = [] if self.response["output"] else self._open()  # an empty answer is still one (empty) message
        incomplete = self.finish is Finish.LENGTH
        events += self._close("incomplete" if incomplete else "completed")
        self.response["usage"] = usage(self.run)
        if incomplete:
            self.response.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
            return [*events, self.event("response.incomplete", response=self.response)]
        status = "cancelled" if self.finish is Finish.CANCELLED else "completed"
        self.response.update(status=status, completed_at=int(time.time()) if status == "completed" else None)
        return [*events, self.event("response.completed", response=self.response)]

    def failed(self, exc: SlmkitError) -> list[Event]:
        events = self._close("incomplete")
        self.response.update(status="failed", usage=usage(self.run),
                             error={"code": error_code(exc), "message": exc.message})
        return [*events, self.event("response.failed", response=self.response)]

    # -- items ---------------------------------------------------------------------------------
    def _open(self) -> list[Event]:
        self.message = {"id": new_id("msg"), "type": "message", "status": "in_progress", "role": "assistant",
                        "content": []}
        index = len(self.response["output"])
        self.response["output"].append(self.message)
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events = [self.event("response.output_item.added", output_index=index, item=self.message)]
        self.message["content"].append(part)
        return [*events, self.event("response.content_part.added", item_id=self.message["id"],
                                    output_index=index, content_index=0, part=part)]

    def _text(self, text: str, lps: list[TokenLogprob]) -> list[Event]:
        events = self._open() if self.message is None else []
        assert self.message is not None
        part = self.message["content"][0]
        part["text"] += text
        if self.with_logprobs:
            part["logprobs"] += logprobs(lps)
        return [*events, self.event("response.output_text.delta", item_id=self.message["id"],
                                    output_index=self.response["output"].index(self.message), content_index=0,
                                    delta=text, logprobs=logprobs(lps) if self.with_logprobs else [])]

    def _close(self, status: str) -> list[Event]:
        """Close the open message item (if any)."""
        item, self.message = self.message, None
        if item is None:
            return []
        index = self.response["output"].index(item)
        part = item["content"][0]
        item["status"] = status
        ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
        return [self.event("response.output_text.done", **ids, text=part["text"], logprobs=part["logprobs"]),
                self.event("response.content_part.done", **ids, part=part),
                self.event("response.output_item.done", output_index=index, item=item)]

    def _call(self, call: ToolCall) -> list[Event]:
        events = self._close("completed")
        index = len(self.response["output"])
        item = {"id": new_id("fc"), "type": "function_call", "status": "in_progress", "call_id": call.id,
                "name": call.name, "arguments": ""}
        self.response["output"].append(item)
        events.append(self.event("response.output_item.added", output_index=index, item=item))
        item.update(arguments=call.arguments_json, status="completed")
        ids = {"item_id": item["id"], "output_index": index}
        return [*events, self.event("response.function_call_arguments.delta", **ids, delta=item["arguments"]),
                self.event("response.function_call_arguments.done", **ids, name=call.name,
                           arguments=item["arguments"]),
                self.event("response.output_item.done", output_index=index, item=item)]


async def response_object(run: Run, head: dict[str, Any], with_logprobs: bool) -> dict[str, Any]:
    """The whole Response object (a failure raises, to be answered as an HTTP error)."""
    assembler = Assembler(run, head, with_logprobs)
    async for delta in run.deltas():
        assembler.feed(delta)
    assembler.closing()
    return assembler.response


def _sse(event: Event) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"


async def response_events(run: Run, head: dict[str, Any], with_logprobs: bool, on_done: OnDone) -> AsyncIterator[str]:
    """The run as SSE events; a failure ends with ``response.failed``. ``on_done`` gets the
    final Response object (to store it) unless the client went away first."""
    assembler = Assembler(run, head, with_logprobs)
    try:
        for event in assembler.opening():
            yield _sse(event)
        async for delta in run.deltas():
            for event in assembler.feed(delta):
                yield _sse(event)
        closing = assembler.closing()
    except SlmkitError as exc:
        closing = assembler.failed(exc)
    await on_done(assembler.response)
    for event in closing:
        yield _sse(event)
