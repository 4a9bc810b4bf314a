"""Our own routes: POST /tokenize, POST /detokenize and GET /tokenizer_info, for any served model."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from slmkit.server.policy import model_route
from slmkit.server.protocol.tokenize import (
    DetokenizeRequest,
    DetokenizeResponse,
    Piece,
    TokenizeRequest,
    TokenizeResponse,
    TokenizerInfo,
)
from slmkit.server.routes.common import service

router = APIRouter(tags=["tokenize"])


@router.post("/tokenize", response_model=TokenizeResponse)
@model_route()
async def tokenize(body: TokenizeRequest, request: Request) -> Response:
    """Token ids of ``content`` (special tokens such as ``<|im_start|>`` are parsed);
    ``add_special`` adds the BOS/CLS tokens the model wants; ``with_pieces`` pairs each id
    with its text. Tokenizing and encoding the answer run in a worker thread: a
    multi-megabyte text never holds the event loop."""
    engine = await service(request).tokenizer(body.model)

    def work() -> bytes:
        ids = engine.tokenize(body.text(), add_special=body.special, parse_special=True)
        tokens: list[int] | list[Piece] = [Piece(id=t, piece=engine.piece(t)) for t in ids] if body.with_pieces \
            else ids
        return TokenizeResponse(model=engine.name, tokens=tokens, count=len(ids),
                                max_model_len=engine.context_length).model_dump_json().encode()

    return Response(await asyncio.to_thread(work), media_type="application/json")


@router.post("/detokenize")
@model_route()
async def detokenize(body: DetokenizeRequest, request: Request) -> DetokenizeResponse:
    engine = await service(request).tokenizer(body.model)
    engine.info.check_tokens(body.tokens, "tokens")
    text = engine.detokenize(body.tokens)
    return DetokenizeResponse(model=engine.name, content=text, prompt=text)


@router.get("/tokenizer_info")
@model_route()
async def tokenizer_info(request: Request, model: str | None = None) -> TokenizerInfo:
    """The tokenizer's special tokens and length (vLLM's route; ``model`` defaults to the first
    served model). A chat model's BOS/EOS come from its template; an embedder has none."""
    engine = await service(request).tokenizer(model)
    template = getattr(engine, "template", None)
    return TokenizerInfo(model=engine.name, bos_token=getattr(template, "bos_token", None) or None,
                         eos_token=getattr(template, "eos_token", None) or None,
                         model_max_length=engine.context_length)
