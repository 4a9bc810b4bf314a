"""`slm serve`: the OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

import click

from slmkit.cli.common import engine_options, handle_errors, parse_bytes
from slmkit.server.protocol.ollama import parse_keep_alive
from slmkit.settings import load_settings


@click.command()
@click.argument("model_args", nargs=-1, metavar="[MODEL]...")
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
@click.option("--prompt-cache-mib", type=click.IntRange(min=0), default=None,
              help="Host memory for KV states of prompts no slot holds any more, MiB; 0: off "
                   "[a quarter of the memory available, at most 8192].")
@click.option("--prefill-chunk", type=click.IntRange(min=1), default=None,
              help="Most prompt tokens read per step, so running streams keep flowing [256].")
@click.option("--cache-type-k", type=click.Choice(["f16", "q8_0", "q4_0"]), default=None,
              help="KV cache type of keys: q8_0 halves the KV memory per slot, q4_0 quarters it [f16].")
@click.option("--cache-type-v", type=click.Choice(["f16", "q8_0", "q4_0"]), default=None,
              help="KV cache type of values [f16].")
@click.option("--speculative", type=click.Choice(["ngram", "off"]), default=None,
              help="Prompt-lookup speculative decoding (llama.cpp engine), adaptive per sequence [off].")
@click.option("--api-key", default=None, help="One static API key (also SLM_API_KEY).")
@click.option("--metrics-public", is_flag=True, default=None, help="Serve /metrics without a key.")
@click.option("--cors-origin", "cors_origins", multiple=True, help="Allow this browser origin (repeatable).")
@click.option("--allowed-host", "allowed_hosts", multiple=True,
              help="Serve requests whose Host header names this host (repeatable; '*': any). IP addresses and "
                   "localhost are always served [loopback bind: only those; other binds: any].")
@click.option("--ssl-certfile", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--ssl-keyfile", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--max-concurrent-per-key", type=click.IntRange(min=1), default=None)
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write one JSON line per request here (rotated by size).")
@click.option("--log-content", is_flag=True, default=None, help="Include prompts and outputs in the audit log.")
@click.option("--drain-timeout", type=click.FloatRange(min=0), default=None,
              help="Seconds running requests get after SIGTERM [30].")
@engine_options
@handle_errors
def serve(model_args: tuple[str, ...], host: str | None, port: int | None, models: tuple[str, ...],
          max_queue: int | None, keep_alive: str | None, max_loaded_models: int | None, max_memory: str | None,
          context_overflow: str | None, prompt_cache_mib: int | None, prefill_chunk: int | None,
          cache_type_k: str | None, cache_type_v: str | None, speculative: str | None, api_key: str | None,
          metrics_public: bool | None, cors_origins: tuple[str, ...], allowed_hosts: tuple[str, ...],
          ssl_certfile: Path | None, ssl_keyfile: Path | None,
          max_concurrent_per_key: int | None, audit_log: Path | None, log_content: bool | None,
          drain_timeout: float | None, parallel: int | None, ctx_size: int | None, threads: int | None) -> None:
    """Serve MODEL (or --model; default: the embedded smollm2-135m-instruct) over the OpenAI and
    Ollama APIs. The first model loads at start, others on first use."""
    from slmkit.cli.serve_start import banner, check_port, hint_busy
    from slmkit.errors import StoreError
    from slmkit.server.runner import serve as run_server
    from slmkit.store.resolve import resolve_model

    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise click.UsageError("--ssl-certfile and --ssl-keyfile go together")
    settings = load_settings(
        server__host=host, server__port=port, server__models=[*model_args, *models] or None,
        server__drain_timeout=drain_timeout,
        server__keep_alive=parse_keep_alive(keep_alive), server__max_loaded_models=max_loaded_models,
        server__max_memory_bytes=parse_bytes(max_memory) if max_memory else None,
        engine__parallel=parallel, engine__ctx_size=ctx_size, engine__threads=threads, engine__max_queue=max_queue,
        engine__context_overflow=context_overflow, engine__prefill_chunk=prefill_chunk,
        engine__prompt_cache_mib=prompt_cache_mib, engine__speculative=speculative,
        engine__cache_type_k=cache_type_k, engine__cache_type_v=cache_type_v,
        security__api_key=api_key, security__metrics_public=metrics_public,
        security__cors_origins=list(cors_origins) or None, security__allowed_hosts=list(allowed_hosts) or None,
        security__ssl_certfile=ssl_certfile,
        security__ssl_keyfile=ssl_keyfile, security__max_concurrent_per_key=max_concurrent_per_key,
        security__audit_log=audit_log, security__log_content=log_content,
    )
    for index, spec in enumerate(settings.server.models):  # a bad name is one line, not a failed startup
        try:
            resolve_model(spec, settings.store.home)
        except StoreError as exc:
            if index == 0:  # the default model loads at start: a damaged one is an error
                raise
            click.echo(f"warning: {exc.message}", err=True)  # requests for it answer 500 with the reason
    check_port(settings.server.host, settings.server.port)
    for line in banner(settings):
        click.echo(line, err=True)
    hint_busy(settings)
    run_server(settings)
