"""Render every error once, in the shape of the API that was called."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from slmkit.errors import InvalidRequest, SlmkitError
from slmkit.server.encode import anthropic as anthropic_wire
from slmkit.server.encode import ollama as ollama_wire
from slmkit.server.encode import openai as openai_wire

log = logging.getLogger("slmkit.server")


def anthropic_path(path: str) -> bool:
    return path == "/v1/messages" or path.startswith("/v1/messages/")


def error_body(path: str, exc: SlmkitError) -> dict[str, Any]:
    """The error in the shape of the API the path belongs to (one renderer per wire format)."""
    if path.startswith("/api/"):
        return ollama_wire.error_body(exc)
    if anthropic_path(path):
        return anthropic_wire.error_body(exc)
    return openai_wire.error_body(exc)


def error_status(path: str, exc: SlmkitError) -> int:
    """The HTTP status of the error in that API (Anthropic answers a full queue with 529)."""
    return anthropic_wire.error_status(exc) if anthropic_path(path) else exc.status


def error_response(request: Request, exc: SlmkitError) -> JSONResponse:
    request.app.state.guard.metrics.errors.labels(exc.code).inc()
    path = request.url.path
    return JSONResponse(error_body(path, exc), status_code=error_status(path, exc), headers=exc.headers())


def validation_to_error(exc: RequestValidationError) -> InvalidRequest:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return InvalidRequest(f"Malformed JSON body: {first.get('ctx', {}).get('error', 'invalid JSON')}")
    # pydantic adds the union member's type name to the location; drop it for the param
    param = ".".join(p for p in loc if not _type_tag(p))
    message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        message = f"'{param}' is a required property"
    else:
        message = f"Invalid value for '{param}': {message}" if param else message
    return InvalidRequest(message, param=param or None)


def _type_tag(part: str) -> bool:
    """Whether a location part names a union member's type (``str``, ``list[int]``, ``ChatMessage``,
    ``function-after[...]``) rather than a field, so ``stream_options`` or ``interval`` stay."""
    return part[:1].isupper() or part in _TYPE_NAMES or "[" in part or part.startswith(("function-", "constrained-"))


_TYPE_NAMES = frozenset({"str", "int", "float", "bool", "bytes", "none", "dict", "list", "tuple"})


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SlmkitError)
    async def _slmkit(request: Request, exc: SlmkitError) -> JSONResponse:
        if exc.status >= 500:
            log.error("%s %s: %s", request.method, request.url.path, exc.message)
        return error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, validation_to_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        err = SlmkitError(str(exc.detail), code="not_found" if exc.status_code == 404 else "http_error")
        err.status = exc.status_code
        err.type = "invalid_request_error"
        return error_response(request, err)
