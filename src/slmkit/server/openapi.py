"""``/openapi.json`` as the server really answers: the status codes it sends (400, not FastAPI's
422), each API's error body shape, and the stream content types (SSE, NDJSON, Prometheus text).

FastAPI builds the document from the routes; ``truthful(document)`` then rewrites each operation:

* 422 goes (validation errors are 400 in the API's own shape);
* every operation may answer 403 (Host, Origin, key scope) and 431 (headers), every guarded one
  401 (keys), 429 (rate limits, a full queue) and 503 (draining); a body route 400, 413 and 415;
  a route that names a model 404;
* errors are ``{"error": {"message", "type", "param", "code"}}`` outside ``/api/`` and
  ``{"error": "..."}`` under it (Ollama's shape), ``{"type": "error", "error": {"type", "message"}}``
  under ``/v1/messages`` (Anthropic's, where a full queue is 529);
* streamed routes add ``text/event-stream`` (OpenAI, Anthropic) or ``application/x-ndjson`` (Ollama);
  ``/metrics`` is Prometheus text; ``/api/copy``, ``/api/delete`` and ``/api/blobs`` answer with no body.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

OPENAI_ERROR = {
    "type": "object", "required": ["error"],
    "properties": {"error": {
        "type": "object", "required": ["message", "type", "param", "code"],
        "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                       "param": {"type": ["string", "null"]}, "code": {"type": ["string", "null"]}},
    }},
}
SSE_EVENT = {"type": "object", "required": ["data"],
             "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}}}
ANTHROPIC_ERROR = {
    "type": "object", "required": ["type", "error"],
    "properties": {"type": {"const": "error"}, "error": {
        "type": "object", "required": ["type", "message"],
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
    }},
}
OLLAMA_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
REASONS = {400: "Invalid request", 401: "Missing or invalid API key",
           403: "Refused: a foreign Host or Origin, or a model outside the key's scope",
           404: "Unknown model (or stored response)", 413: "Request body too large", 415: "The body is not JSON",
           429: "Rate limited or the wait queue is full (see Retry-After)",
           431: "Request headers too large", 503: "The server is shutting down or not ready",
           529: "The wait queue is full (see Retry-After)"}
PROBES = frozenset({"/health", "/ready"})
SSE = frozenset({"/v1/chat/completions", "/v1/completions"})
# semantic events (Responses, Anthropic): each has an event: line and a JSON data line
SSE_EVENTS = frozenset({"/v1/responses", "/v1/messages"})
ANTHROPIC = frozenset({"/v1/messages", "/v1/messages/count_tokens"})
NDJSON = frozenset({"/api/generate", "/api/chat", "/api/pull", "/api/create"})
NO_BODY = frozenset({"/api/copy", "/api/delete", "/api/blobs/{digest}"})
NAMES_A_MODEL = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models/{model_id}",
                           "/v1/messages", "/v1/messages/count_tokens",
                           "/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show",
                           "/api/pull", "/api/delete", "/api/copy", "/api/create", "/tokenize", "/detokenize",
                           "/tokenizer_info"})
STORED = frozenset({"/v1/responses", "/v1/responses/{response_id}", "/v1/responses/{response_id}/input_items"})
PLAIN_TEXT = {"/metrics": "text/plain", "/": "text/plain"}


def install(app: FastAPI) -> None:
    """Serve the rewritten document at ``/openapi.json`` (built once, on first request)."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = truthful(plain())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def truthful(document: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(document)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["OpenAIError"] = OPENAI_ERROR
    schemas["OllamaError"] = OLLAMA_ERROR
    schemas["AnthropicError"] = ANTHROPIC_ERROR
    for path, operations in doc.get("paths", {}).items():
        for method, operation in operations.items():
            _rewrite(path, method, operation)
    return doc


def _rewrite(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)
    ok = responses.setdefault("200", {"description": "Successful Response"})
    if path in SSE | SSE_EVENTS:  # OpenAPI 3.1: the schema describes each event; its data is a JSON chunk or [DONE]
        ok.setdefault("content", {})["text/event-stream"] = {"schema": SSE_EVENT}
    if path in NDJSON:
        ok.setdefault("content", {})["application/x-ndjson"] = {"schema": {"type": "string"}}
    if path in NO_BODY:
        ok.pop("content", None)
    if path in PLAIN_TEXT:
        content = ok.setdefault("content", {})
        content.pop("application/json", None)
        content[PLAIN_TEXT[path]] = {"schema": {"type": "string"}}
    shape = "OllamaError" if path.startswith("/api/") else "AnthropicError" if path in ANTHROPIC else "OpenAIError"
    ref: dict[str, Any] = {"$ref": "#/components/schemas/" + shape}
    if path == "/ready":  # not ready is a status, not an error
        ref = {"type": "object", "properties": {"status": {"type": "string"}, "reason": {"type": "string"}}}
    for status in _statuses(path, method, operation):
        headers = {"Retry-After": {"schema": {"type": "string"}}} if status in (429, 503, 529) else None
        entry: dict[str, Any] = {"description": REASONS[status], "content": {"application/json": {"schema": ref}}}
        if headers:
            entry["headers"] = headers
        responses.setdefault(str(status), entry)


def _statuses(path: str, method: str, operation: dict[str, Any]) -> list[int]:
    codes = [403, 431]
    if path in PROBES:
        return [*codes, 503] if path == "/ready" else codes
    codes += [401, 429, 503]
    if "requestBody" in operation or operation.get("parameters"):
        codes += [400]
    if "requestBody" in operation:
        codes += [413, 415]
    if path in NAMES_A_MODEL or path in STORED:  # an unknown model, or an unknown (or another key's) response
        codes += [404]
    if path == "/v1/messages":
        codes += [529]  # a full wait queue, as Anthropic answers it
    return sorted(set(codes))
