"""The application factory: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from slmkit import __version__
from slmkit.server.errors import install_error_handlers
from slmkit.server.registry import ModelRegistry
from slmkit.server.routes import health, ollama_store, openai
from slmkit.server.services import GenerationService
from slmkit.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """Build the server. Models load when the app starts (lifespan) and unload when it stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = ModelRegistry(settings)
        try:
            registry.load_configured()
            app.state.service = GenerationService(registry)
            yield
        finally:
            registry.close()

    app = FastAPI(title="slmkit", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(openai.router)
    app.include_router(health.router)
    app.include_router(ollama_store.router)
    return app
