"""What every door's routes share: the service, and cancelling work when the client leaves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from slmkit.errors import ClientDisconnected
from slmkit.server.usecases.service import GenerationService

T = TypeVar("T")


def service(request: Request) -> GenerationService:
    return request.app.state.service  # type: ignore[no-any-return]


async def until_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work`` unless the client goes away first; then cancel it (freeing its slots)
    and raise ``ClientDisconnected``."""
    task = asyncio.ensure_future(work)

    async def wait_disconnect() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(wait_disconnect())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ClientDisconnected("the client closed the connection")
