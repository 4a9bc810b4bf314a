"""`slm serve`: the OpenAI-compatible server."""

from __future__ import annotations

import sys

import click

from slmkit.cli.common import engine_options, handle_errors
from slmkit.settings import load_settings

SWITCH_INTERVAL_S = 0.0005


@click.command()
@click.option("--host", default=None, help="Address to bind [127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [8080].")
@click.option("--model", "-m", "models", multiple=True,
              help="Model to serve; repeat for several [smollm2-135m-instruct].")
@click.option("--max-queue", type=click.IntRange(min=0), default=None, help="Requests that may wait for a slot [64].")
@click.option("--context-overflow", type=click.Choice(["error", "truncate"]), default=None,
              help="A chat longer than the context: answer 400, or drop the oldest messages [error].")
@click.option("--prefill-chunk", type=click.IntRange(min=1), default=None,
              help="Most prompt tokens read per step, so running streams keep flowing [256].")
@engine_options
@handle_errors
def serve(host: str | None, port: int | None, models: tuple[str, ...], max_queue: int | None,
          context_overflow: str | None, prefill_chunk: int | None,
          parallel: int | None, ctx_size: int | None, threads: int | None) -> None:
    """Serve models over the OpenAI API."""
    import uvicorn

    from slmkit.server.app import create_app

    settings = load_settings(server__host=host, server__port=port, server__models=list(models) or None,
                             engine__parallel=parallel, engine__ctx_size=ctx_size, engine__threads=threads,
                             engine__max_queue=max_queue, engine__context_overflow=context_overflow,
                             engine__prefill_chunk=prefill_chunk)
    # Resolve the models now, so a bad name is one line, not a failed startup.
    from slmkit.store.resolve import resolve_model

    for spec in settings.server.models:
        resolve_model(spec)
    # The scheduler thread needs the GIL back after every llama_decode; Python's default 5 ms
    # switch interval would make it wait behind the event loop that long on each step.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    uvicorn.run(create_app(settings), host=settings.server.host, port=settings.server.port,
                log_level=settings.log_level, timeout_graceful_shutdown=5)
