"""Our own routes: POST /tokenize and POST /detokenize, for any served model."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from slmkit.server.policy import model_route
from slmkit.server.protocol.tokenize import (
    DetokenizeRequest,
    DetokenizeResponse,
    Piece,
    TokenizeRequest,
    TokenizeResponse,
)
from slmkit.server.routes.common import service

router = APIRouter(tags=["tokenize"])


@router.post("/tokenize")
@model_route()
async def tokenize(body: TokenizeRequest, request: Request) -> TokenizeResponse:
    """Token ids of ``content`` (special tokens such as ``<|im_start|>`` are parsed);
    ``add_special`` adds the BOS/CLS tokens the model wants; ``with_pieces`` pairs each id
    with its text."""
    text = body.text()
    engine = await service(request).tokenizer(body.model)
    ids = await asyncio.to_thread(engine.tokenize, text, add_special=body.add_special, parse_special=True)
    tokens: list[int] | list[Piece] = [Piece(id=t, piece=engine.piece(t)) for t in ids] if body.with_pieces else ids
    return TokenizeResponse(model=engine.name, tokens=tokens, count=len(ids), max_model_len=engine.context_length)


@router.post("/detokenize")
@model_route()
async def detokenize(body: DetokenizeRequest, request: Request) -> DetokenizeResponse:
    engine = await service(request).tokenizer(body.model)
    engine.info.check_tokens(body.tokens, "tokens")
    return DetokenizeResponse(model=engine.name, content=engine.detokenize(body.tokens))
