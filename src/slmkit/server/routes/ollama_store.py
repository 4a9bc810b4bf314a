"""Ollama's model-management routes over the local store: pull, delete, copy, create, show."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from slmkit.errors import ModelNotFound, SlmkitError
from slmkit.server.policy import admin_route, model_route
from slmkit.server.protocol.ollama_store import (
    CopyRequest,
    CreateRequest,
    DeleteRequest,
    ProgressResponse,
    PullRequest,
    ShowDetails,
    ShowRequest,
    ShowResponse,
)
from slmkit.store.create import create
from slmkit.store.names import parse_ref
from slmkit.store.pull import PullEvent, Reporter, pull
from slmkit.store.quantize import quantize
from slmkit.store.show import describe
from slmkit.store.store import Store

router = APIRouter(tags=["ollama"])
_DONE = object()


def _store(request: Request) -> Store:
    return Store(request.app.state.settings.store.home)


async def _run_streamed(job: Callable[[Reporter], Any], stream: bool) -> Response:
    """Run a blocking store job in a thread. Errors before its first report answer with their status;
    later ones end the NDJSON stream with an ``{"error": ...}`` line, as Ollama does."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def report(event: PullEvent) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    async def work() -> None:
        try:
            await asyncio.to_thread(job, report)
            await queue.put(_DONE)
        except Exception as exc:  # handed to the response, raised or sent as an error line
            await queue.put(exc)

    task = asyncio.create_task(work())
    first = await queue.get()
    if isinstance(first, BaseException):
        raise first
    if not stream:
        item = first
        while item is not _DONE:
            if isinstance(item, BaseException):
                raise item
            item = await queue.get()
        await task
        return Response(json.dumps({"status": "success"}), media_type="application/json")

    async def lines() -> AsyncIterator[str]:
        item = first
        while item is not _DONE:
            if isinstance(item, SlmkitError):
                yield json.dumps({"error": item.message}) + "\n"
                break
            if isinstance(item, BaseException):
                yield json.dumps({"error": f"{item.__class__.__name__}: {item}"}) + "\n"
                break
            yield ProgressResponse(**item.__dict__).model_dump_json(exclude_none=True) + "\n"
            item = await queue.get()
        await task

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/api/pull", response_model=None)
@admin_route()
async def api_pull(body: PullRequest, request: Request) -> Response:
    store, model = _store(request), body.target()
    return await _run_streamed(lambda report: pull(store, model, report=report, allow_paths=False), body.stream)


@router.delete("/api/delete")
@admin_route()
async def api_delete(body: DeleteRequest, request: Request) -> Response:
    await asyncio.to_thread(_store(request).remove, body.target())
    return Response(status_code=200)


@router.post("/api/copy")
@admin_route()
async def api_copy(body: CopyRequest, request: Request) -> Response:
    await asyncio.to_thread(_store(request).copy, body.source, body.destination)
    return Response(status_code=200)


@router.post("/api/create", response_model=None)
@admin_route()
async def api_create(body: CreateRequest, request: Request) -> Response:
    store, name, profile = _store(request), body.target(), body.profile()

    parse_ref(name)

    def job(report: Reporter) -> None:
        if body.quantize:
            status = f"quantizing {profile.from_} to {body.quantize}"
            profile.from_ = quantize(store, profile.from_, body.quantize, name=name, allow_paths=False,
                                     progress=lambda done, total: report(PullEvent(status, total=total,
                                                                                   completed=done))).name
        create(store, name, profile, report=report, allow_paths=False)

    return await _run_streamed(job, body.stream)


@router.post("/api/show")
@model_route("model", "name")
async def api_show(body: ShowRequest, request: Request) -> ShowResponse:
    home = request.app.state.settings.store.home
    try:
        desc = await asyncio.to_thread(lambda: describe(body.target(), home, allow_paths=False))
    except ModelNotFound as missing:  # a model the server was started with by path: find it by served name
        try:
            resolved = await asyncio.to_thread(request.app.state.service.registry.resolve, body.target())
        except ModelNotFound:
            raise ModelNotFound(f"model '{body.target()}' not found") from missing
        desc = await asyncio.to_thread(describe, str(resolved.path), home)
    params = desc.profile.parameters if desc.profile else {}
    lines = [f"{k} {json.dumps(v) if isinstance(v, str) else v}" for k, vs in params.items()
             for v in (vs if isinstance(vs, list) else [vs])]
    template = desc.template or ""
    info = desc.model_info()
    arch = str(info.get("general.architecture", ""))
    embedding = arch in ("bert", "nomic-bert") or f"{arch}.pooling_type" in info
    # every chat model takes tools: templates without tool support get them in the system prompt
    capabilities = ["embedding"] if embedding else ["completion", "tools"]
    return ShowResponse(
        modelfile=desc.modelfile(), parameters="\n".join(lines), template=template,
        system=desc.profile.system if desc.profile else None, license=desc.license,
        details=ShowDetails(**desc.details()), model_info=info, capabilities=capabilities,
        modified_at=datetime.fromtimestamp(desc.modified_at, tz=timezone.utc).isoformat(),
    )
