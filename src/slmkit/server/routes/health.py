"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    """The process is alive and answering."""
    registry = request.app.state.service.registry
    return {"status": "ok", "models": registry.names()}


@router.get("/slots")
async def slots(request: Request) -> dict[str, object]:
    """Each loaded model's slots and live counters, like llama-server's ``/slots``."""
    registry = request.app.state.service.registry
    out: dict[str, object] = {}
    for entry in registry.loaded():  # models load on demand: only the loaded ones have slots
        engine = entry.engine
        if hasattr(engine, "slot_states"):  # embedding engines have no generation slots
            out[entry.name] = {**engine.stats(), "slots": engine.slot_states()}
    return out
