"""Ollama's blob routes (what ``ollama create`` with files uploads through) and ``/api/push``.

``POST /api/blobs/:digest`` streams the body to the store under ``server.max_blob_bytes`` (the
guard does not buffer it: the route's policy says ``stream``); ``HEAD`` says whether a blob is
there. Pushing to a registry is not something this server does: ``/api/push`` says so."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response

from slmkit.errors import NotSupported, PayloadTooLarge
from slmkit.server.policy import admin_route
from slmkit.store.blobs import BlobUpload, blob_digest
from slmkit.store.store import Store

router = APIRouter(tags=["ollama"])
FLUSH_BYTES = 1 << 20  # write to disk (in a worker thread) a MiB at a time
Digest = Annotated[str, Path(pattern=r"^sha256:[0-9a-f]{64}$", description="sha256:<64 hex digits> of the file")]
_OLLAMA_ERROR: dict[str, Any] = {"application/json": {"schema": {"$ref": "#/components/schemas/OllamaError"}}}
_UPLOAD_DOC: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}


def _store(request: Request) -> Store:
    return Store(request.app.state.settings.store.home)


@router.head("/api/blobs/{digest}", response_class=Response, responses={404: {"description": "No such blob"}})
@admin_route()
async def blob_exists(digest: Digest, request: Request) -> Response:
    """200 when the store holds the blob, else 404."""
    found = await asyncio.to_thread(_store(request).has_blob, blob_digest(digest))
    return Response(status_code=200 if found else 404)


@router.post("/api/blobs/{digest}", status_code=201, response_class=Response, openapi_extra=_UPLOAD_DOC,
             responses={200: {"description": "The blob was already there"}, 201: {"description": "Stored"}})
@admin_route(body="stream")
async def blob_upload(digest: Digest, request: Request) -> Response:
    """Store the body as a blob: 201 when written, 200 when it was already there, 400 when its
    sha256 is not ``digest``, 413 past ``server.max_blob_bytes``."""
    store, cap = _store(request), request.app.state.settings.server.max_blob_bytes
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        raise PayloadTooLarge(f"blob over the {cap}-byte limit (server.max_blob_bytes)")
    if await asyncio.to_thread(store.has_blob, blob_digest(digest)):
        async for _ in request.stream():  # read (and drop) it, so the client's upload completes
            pass
        return Response(status_code=200)
    with BlobUpload(store, digest, cap) as upload:
        pending = bytearray()
        async for chunk in request.stream():
            pending += chunk
            if len(pending) >= FLUSH_BYTES:
                await asyncio.to_thread(upload.write, bytes(pending))
                pending.clear()
        await asyncio.to_thread(upload.write, bytes(pending))
        await asyncio.to_thread(upload.commit)
    return Response(status_code=201)


@router.post("/api/push", response_class=Response,
             responses={400: {"description": "Pushing is not supported", "content": _OLLAMA_ERROR}})
@admin_route()
async def push() -> Response:
    raise NotSupported("pushing models to a registry is not supported by this server")
