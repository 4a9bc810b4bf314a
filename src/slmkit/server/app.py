"""The application factory: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from slmkit import __version__
from slmkit.engine.llamacpp import grammar
from slmkit.server import openapi
from slmkit.server.audit import AuditLog
from slmkit.server.auth import KeyStore
from slmkit.server.browser import BrowserGuard
from slmkit.server.clock import SYSTEM_CLOCK, Clock
from slmkit.server.errors import install_error_handlers
from slmkit.server.guard import Guard, GuardState
from slmkit.server.limits import RateLimiter
from slmkit.server.metrics import Metrics
from slmkit.server.policy import check_routes, flat_routes
from slmkit.server.registry import ModelRegistry
from slmkit.server.routes import (
    anthropic,
    health,
    ollama,
    ollama_blobs,
    ollama_store,
    openai,
    page,
    responses,
    tokenize,
)
from slmkit.server.stored_responses import ResponseStore
from slmkit.server.usecases.service import GenerationService
from slmkit.settings import Settings


def create_app(settings: Settings, clock: Clock = SYSTEM_CLOCK) -> FastAPI:
    """Build the server. The default model loads when the app starts (lifespan), the others on
    first use; all unload when it stops."""
    grammar.configure(grammar.GrammarLimits.from_settings(settings.engine))
    registry = ModelRegistry(settings, clock)
    metrics = Metrics(registry)
    security = settings.security
    guard = GuardState(settings=settings, metrics=metrics, keys=KeyStore(settings.keys_db, clock),
                       limiter=RateLimiter(security.max_concurrent_per_key, clock.monotonic),
                       audit=AuditLog(security.audit_log, max_bytes=security.audit_max_bytes,
                                      backups=security.audit_backups), registry=registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            try:
                await registry.start()
            except Exception as exc:  # kept for slmkit.serve, which reports it to its caller
                app.state.startup_error = exc
                raise
            yield
        finally:
            await registry.aclose()
            guard.audit.close()

    app = FastAPI(title="slmkit", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.startup_error = None
    app.state.service = GenerationService(registry, metrics)
    app.state.guard = guard
    app.state.responses = ResponseStore(settings.responses_db, settings.responses, clock)
    install_error_handlers(app)
    openapi.install(app)
    app.include_router(openai.router)
    app.include_router(responses.router)
    app.include_router(anthropic.router)
    app.include_router(ollama.router)
    app.include_router(tokenize.router)
    app.include_router(health.router)
    app.include_router(page.router)
    page.mount_static(app)
    app.include_router(ollama_store.router)
    app.include_router(ollama_blobs.router)
    guard.routes = flat_routes(app.router.routes)
    check_routes(guard.routes)
    app.add_middleware(Guard, state=guard)
    app.add_middleware(BrowserGuard, settings=settings)  # Host, Origin, JSON only, security headers
    if security.cors_origins:  # outermost, so preflights are answered before auth
        app.add_middleware(CORSMiddleware, allow_origins=security.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], allow_credentials=False)
    return app
