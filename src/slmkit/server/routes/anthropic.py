"""Anthropic Messages API routes (``/v1/messages``): each turns its body into a neutral call,
hands it to the use-case layer and encodes the run (see ``server.encode.anthropic``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from slmkit.server.encode import anthropic as wire
from slmkit.server.policy import model_route
from slmkit.server.protocol.anthropic import CountTokensRequest, MessageResponse, MessagesRequest, TokenCount
from slmkit.server.routes.common import service, until_disconnected

router = APIRouter(tags=["anthropic"])


@router.post("/v1/messages", response_model=None, responses={200: {"model": MessageResponse}})
@model_route()
async def messages(body: MessagesRequest, request: Request) -> Any:
    run = await service(request).chat(body.to_call())
    if body.stream:
        return wire.sse_response(wire.message_events(run))
    return wire.message(await until_disconnected(request, run.collect()))


@router.post("/v1/messages/count_tokens")
@model_route()
async def count_tokens(body: CountTokensRequest, request: Request) -> TokenCount:
    """The prompt tokens the conversation (system, tools, messages) takes as the server renders it."""
    return TokenCount(input_tokens=await service(request).count_chat(body.to_call()))
