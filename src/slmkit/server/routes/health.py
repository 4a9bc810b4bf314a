"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request

router = APIRouter(tags=["health"])


@router.get("/health")
async def health(request: Request) -> dict[str, object]:
    """The process is alive and answering."""
    registry = request.app.state.service.registry
    return {"status": "ok", "models": registry.names()}
