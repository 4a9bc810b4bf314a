"""Our own routes: POST /tokenize and POST /detokenize, for any served model."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from slmkit.errors import InvalidRequest
from slmkit.server.protocol.tokenize import (
    DetokenizeRequest,
    DetokenizeResponse,
    Piece,
    TokenizeRequest,
    TokenizeResponse,
)

router = APIRouter(tags=["tokenize"])


def _piece(engine: object, token: int) -> str:
    model = getattr(engine, "model", None)
    if model is not None and hasattr(model, "piece"):
        return bytes(model.piece(token, special=True)).decode("utf-8", errors="replace")
    return str(engine.detokenize([token]))  # type: ignore[attr-defined]


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> TokenizeResponse:
    """Token ids of ``content`` (special tokens such as ``<|im_start|>`` are parsed);
    ``add_special`` adds the BOS/CLS tokens the model wants; ``with_pieces`` pairs each id
    with its text."""
    text = body.text()
    engine = await request.app.state.service.registry.acquire(body.model)
    ids = await asyncio.to_thread(engine.tokenize, text, add_special=body.add_special, parse_special=True)
    tokens: list[int] | list[Piece] = [Piece(id=t, piece=_piece(engine, t)) for t in ids] if body.with_pieces else ids
    return TokenizeResponse(model=engine.name, tokens=tokens, count=len(ids), max_model_len=engine.context_length)


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> DetokenizeResponse:
    engine = await request.app.state.service.registry.acquire(body.model)
    vocab = int(engine.info.get("vocab_size", 0))
    if any(not 0 <= t < vocab for t in body.tokens):
        raise InvalidRequest(f"tokens must be ids in [0, {vocab})", param="tokens")
    return DetokenizeResponse(model=engine.name, content=engine.detokenize(body.tokens))
