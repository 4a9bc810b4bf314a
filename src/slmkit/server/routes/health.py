"""Probes and telemetry: /health, /ready, /metrics, /slots."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from slmkit.engine.base import Engine
from slmkit.errors import Forbidden
from slmkit.server.context import request_context
from slmkit.server.policy import open_route

router = APIRouter(tags=["health"])


@router.get("/health")
@open_route()
async def health(request: Request) -> dict[str, object]:
    """The process is alive and answering (no auth, for liveness probes), with each loaded
    model's engine state ("ok", or why it failed: it loads again on its next request)."""
    engines = {e.name: e.failure or "ok" for e in request.app.state.service.registry.loaded()}
    return {"status": "ok", "engines": engines}


@router.get("/ready", response_model=None)
@open_route()
async def ready(request: Request) -> JSONResponse:
    """Ready for traffic: not draining, the default model loaded, and its queue has room."""
    guard = request.app.state.guard
    registry = request.app.state.service.registry
    reason = None
    if guard.draining:
        reason = "draining: the server is shutting down"
    elif registry.default is None:
        reason = "no default model"
    elif failed := [f"{e.name}: {e.failure}" for e in registry.loaded() if e.failure]:
        reason = f"engine failed ({'; '.join(failed)}); the model loads again on its next request"
    else:
        loaded = {entry.name: entry for entry in registry.loaded()}
        entry = loaded.get(registry.default)  # an unloaded default loads again on the next request
        stats = entry.engine.stats() if entry is not None else None
        if stats and stats["waiting"] >= request.app.state.settings.engine.max_queue and \
                stats["running"] >= stats["slots"]:
            reason = "the wait queue is full"
    if reason:
        return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
    return JSONResponse({"status": "ready", "model": registry.default})


@router.get("/metrics")
@open_route()
async def metrics(request: Request) -> Response:
    """Prometheus metrics (protected by keys unless the server runs with --metrics-public). They
    show every model, so a key scoped to some models may not read them (403)."""
    if request_context().principal.models is not None:
        raise Forbidden("/metrics shows every model's series: it needs a key not scoped to models",
                        code="metrics_not_allowed")
    return Response(generate_latest(request.app.state.guard.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/slots")
@open_route()
async def slots(request: Request) -> dict[str, object]:
    """Each loaded model's slots and live counters, like llama-server's ``/slots``."""
    service = request.app.state.service
    visible = set(service.visible_models())
    out: dict[str, object] = {}
    for entry in service.registry.loaded():  # models load on demand: only the loaded ones have slots
        engine = entry.engine
        if entry.name in visible and isinstance(engine, Engine):  # embedders have no slots
            out[entry.name] = {**engine.stats(), "slots": engine.slot_states()}
    return out
