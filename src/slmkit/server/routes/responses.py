"""OpenAI Responses routes (``/v1/responses``): a door of the one use-case layer. The body becomes
a ``ChatCall`` (``protocol.responses``), the run a Response object or its events
(``encode.responses``); stored responses live in ``server.stored_responses``, one key's apart
from another's."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from slmkit.server.context import Principal, request_context
from slmkit.server.encode import responses as wire
from slmkit.server.encode.openai import sse_response
from slmkit.server.policy import model_route, owner_route
from slmkit.server.protocol.responses import ResponseRequest
from slmkit.server.routes.common import service, until_disconnected
from slmkit.server.stored_responses import ResponseStore

router = APIRouter(tags=["responses"])


def _store(request: Request) -> ResponseStore:
    return request.app.state.responses  # type: ignore[no-any-return]


def _me() -> Principal:
    return request_context().principal


@router.post("/v1/responses", response_model=None)
@model_route()
async def create_response(body: ResponseRequest, request: Request) -> Any:
    store, me = _store(request), _me()
    history = (await store.find(body.previous_response_id, me, "previous_response_id")).conversation() \
        if body.previous_response_id else []
    run = await service(request).chat(body.to_call(history))

    async def keep(response: dict[str, Any]) -> None:
        if body.store:
            await store.save(me, response, [*history, *body.items()], len(history))

    if body.stream:
        return sse_response(wire.response_events(run, body.echo(), body.logprobs, keep))
    response = await until_disconnected(request, wire.response_object(run, body.echo(), body.logprobs))
    await keep(response)
    return response


@router.get("/v1/responses/{response_id}")
@owner_route()
async def get_response(response_id: str, request: Request) -> dict[str, Any]:
    return (await _store(request).find(response_id, _me())).response


@router.delete("/v1/responses/{response_id}")
@owner_route()
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    await _store(request).delete(response_id, _me())
    return {"id": response_id, "object": "response", "deleted": True}


@router.get("/v1/responses/{response_id}/input_items")
@owner_route()
async def list_input_items(response_id: str, request: Request, limit: Annotated[int, Query(ge=1, le=100)] = 20,
                           order: Literal["asc", "desc"] = "desc", after: str | None = None) -> dict[str, Any]:
    """The response's own input items (not its predecessors'), newest first unless ``order=asc``."""
    items = (await _store(request).find(response_id, _me())).input_items()
    items = items[::-1] if order == "desc" else items
    ids = [item.get("id") for item in items]
    start = ids.index(after) + 1 if after in ids else 0
    page = items[start:start + limit]
    return {"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None, "has_more": start + limit < len(items)}
