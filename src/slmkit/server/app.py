"""The application factory: ``create_app(settings)``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from slmkit import __version__
from slmkit.server.errors import install_error_handlers
from slmkit.server.registry import ModelRegistry
from slmkit.server.routes import health, ollama, openai, openai_more, page, tokenize
from slmkit.server.services import GenerationService
from slmkit.settings import Settings


def create_app(settings: Settings) -> FastAPI:
    """Build the server. The default model loads when the app starts (lifespan), the others on
    first use; all unload when it stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry = ModelRegistry(settings)
        try:
            await registry.start()
            app.state.service = GenerationService(registry)
            yield
        finally:
            await registry.aclose()

    app = FastAPI(title="slmkit", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(ollama.JsonBodyForOllama)
    app.include_router(openai.router)
    app.include_router(openai_more.router)
    app.include_router(ollama.router)
    app.include_router(tokenize.router)
    app.include_router(health.router)
    app.include_router(page.router)
    page.mount_static(app)
    return app
