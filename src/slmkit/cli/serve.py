"""`slm serve`: the OpenAI-compatible server."""

from __future__ import annotations

import sys

import click

from slmkit.cli.common import engine_options, handle_errors, parse_bytes
from slmkit.server.protocol.ollama import parse_keep_alive
from slmkit.settings import load_settings

SWITCH_INTERVAL_S = 0.0005


@click.command()
@click.option("--host", default=None, help="Address to bind [127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port [8080].")
@click.option("--model", "-m", "models", multiple=True,
              help="Model to serve; repeat for several [smollm2-135m-instruct].")
@click.option("--max-queue", type=click.IntRange(min=0), default=None, help="Requests that may wait for a slot [64].")
@click.option("--keep-alive", default=None,
              help="How long an idle model stays loaded: seconds or a duration like 5m; 0 unloads at once, "
                   "-1 keeps it [5m].")
@click.option("--max-loaded-models", type=click.IntRange(min=1), default=None,
              help="Models loaded at once before the least recently used is unloaded [3].")
@click.option("--max-memory", default=None, help="Memory budget for loaded models, e.g. 2GiB or 800MB [none].")
@click.option("--context-overflow", type=click.Choice(["error", "truncate"]), default=None,
              help="A chat longer than the context: answer 400, or drop the oldest messages [error].")
@click.option("--prefill-chunk", type=click.IntRange(min=1), default=None,
              help="Most prompt tokens read per step, so running streams keep flowing [256].")
@engine_options
@handle_errors
def serve(host: str | None, port: int | None, models: tuple[str, ...], max_queue: int | None,
          keep_alive: str | None, max_loaded_models: int | None, max_memory: str | None,
          context_overflow: str | None, prefill_chunk: int | None,
          parallel: int | None, ctx_size: int | None, threads: int | None) -> None:
    """Serve models over the OpenAI and Ollama APIs (models load on first use)."""
    import uvicorn

    from slmkit.server.app import create_app

    settings = load_settings(server__host=host, server__port=port, server__models=list(models) or None,
                             engine__parallel=parallel, engine__ctx_size=ctx_size, engine__threads=threads,
                             engine__max_queue=max_queue, engine__context_overflow=context_overflow,
                             engine__prefill_chunk=prefill_chunk, server__keep_alive=parse_keep_alive(keep_alive),
                             server__max_loaded_models=max_loaded_models,
                             server__max_memory_bytes=parse_bytes(max_memory) if max_memory else None)
    # Resolve the models now, so a bad name is one line, not a failed startup.
    from slmkit.store.resolve import resolve_model

    for spec in settings.server.models:
        resolve_model(spec)
    # The scheduler thread needs the GIL back after every llama_decode; Python's default 5 ms
    # switch interval would make it wait behind the event loop that long on each step.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    uvicorn.run(create_app(settings), host=settings.server.host, port=settings.server.port,
                log_level=settings.log_level, timeout_graceful_shutdown=5)
