"""``/``: the chat page for browsers, Ollama's "Ollama is running" for everything else."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles

from slmkit.server.policy import open_route

router = APIRouter(tags=["page"])
OLLAMA_BANNER = "Ollama is running"


def static_dir() -> Path:
    return Path(str(resources.files("slmkit.server") / "static"))


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=static_dir()), name="static")


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


@router.get("/", response_model=None, responses={200: {"content": {"text/html": {}, "text/plain": {}}}})
@open_route()
async def root(request: Request) -> Response:
    """Browsers (``Accept: text/html``) get the chat page; clients probing for Ollama get its
    plain-text banner."""
    if _wants_html(request):
        return FileResponse(static_dir() / "index.html", media_type="text/html")
    return PlainTextResponse(OLLAMA_BANNER)


@router.head("/", include_in_schema=False)
@open_route()
async def root_head() -> Response:
    return PlainTextResponse(OLLAMA_BANNER)
