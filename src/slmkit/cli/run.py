"""`slm run`: one answer or an interactive chat, in process, through the Python API (so the
model's profile, caps and checks are those every other door gets)."""

from __future__ import annotations

import os
import re
import stat
import sys
from contextlib import nullcontext
from typing import Any

import click

from slmkit.cli.common import busy_hint, engine_options, err_console, handle_errors, quiet_llama
from slmkit.errors import InvalidRequest, ModelNotFound
from slmkit.settings import DEFAULT_MODEL

_WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/~-]*$")  # could be a model name or a path


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("model", required=False)
@click.argument("prompt", nargs=-1)
@click.option("--system", default=None, help="System prompt (instead of the profile's SYSTEM).")
@click.option("--temperature", type=click.FloatRange(0, 2), default=None,
              help="Sampling temperature [the profile's, else 0.8].")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Most tokens per answer [the profile's num_predict, else up to the context].")
@click.option("--seed", type=int, default=None)
@click.option("--stop", multiple=True, help="A stop string (repeatable) [the profile's].")
@click.option("--format", "fmt", default=None, metavar="json|SCHEMA",
              help="Answer in JSON: 'json', or a JSON schema (inline or @file), as Ollama's --format.")
@click.option("--api-key", envvar="SLM_API_KEY", default=None,
              help="Act as this key of the store: its model scope applies, as on the server [$SLM_API_KEY].")
@click.option("--verbose", is_flag=True, help="Show llama.cpp's own log lines [in $SLM_HOME/logs/llama.log].")
@engine_options
@handle_errors
def run(model: str | None, prompt: tuple[str, ...], system: str | None, temperature: float | None,
        max_tokens: int | None, seed: int | None, stop: tuple[str, ...], fmt: str | None, api_key: str | None,
        verbose: bool, parallel: int | None, ctx_size: int | None, threads: int | None) -> None:
    """Chat with MODEL: answer PROMPT and exit, or start an interactive chat.

    \b
      slm run                                   chat with the default model
      slm run smollm2-135m-instruct "Hi there"  one answer
      slm run "Why is the sky blue?"            one answer from the default model
      echo "Why is the sky blue?" | slm run     the same, reading the prompt from stdin
    """
    import slmkit
    from slmkit.cli.repl import Session

    name, text = _model_and_prompt(model, " ".join(prompt) if prompt else None)
    piped = _piped_input(force=text is None)
    if piped is not None:
        text = f"{text}\n\n{piped}" if text else piped
        if not text.strip():
            raise InvalidRequest("stdin was empty: pipe a prompt in, or give one as an argument")
    quiet_llama(verbose)
    options: dict[str, Any] = {k: v for k, v in (("temperature", temperature), ("max_tokens", max_tokens),
                                                 ("seed", seed), ("stop", list(stop) or None),
                                                 ("response_format", _format(fmt))) if v is not None}
    engine: dict[str, Any] = {k: v for k, v in (("parallel", parallel or 1), ("ctx_size", ctx_size),
                                                ("threads", threads), ("api_key", api_key)) if v is not None}
    interactive = text is None
    if interactive and sys.stdin.isatty():
        busy_hint(threads)
    with err_console.status(f"loading {name}") if interactive and sys.stderr.isatty() else nullcontext():
        loaded = slmkit.load(name, **engine)
    session = Session(loaded, engine, system=system, options=options)
    try:
        if interactive:
            session.repl()
        else:
            assert text is not None
            session.one_shot(text)
    finally:
        session.close()


def _model_and_prompt(model: str | None, prompt: str | None) -> tuple[str, str | None]:
    """``slm run "Why is the sky blue?"`` is a prompt for the default model: one argument that
    is not a model is the prompt when it cannot be a model's name."""
    from slmkit.store.resolve import resolve_model

    if model is None:
        return DEFAULT_MODEL, prompt
    if prompt is not None:
        return model, prompt
    try:
        resolve_model(model)
    except ModelNotFound:
        if not _WORD.match(model):
            return DEFAULT_MODEL, model
        raise ModelNotFound(f"'{model}' is not a model (see `slm list`); to send it as a prompt to the default "
                            f"model, write: slm run {DEFAULT_MODEL} \"{model}\"", param="model") from None
    return model, None


def _piped_input(force: bool) -> str | None:
    """What a pipe or a redirected file on stdin holds (``echo q | slm run m``), else None."""
    try:
        fd = sys.stdin.fileno()
        mode = os.fstat(fd).st_mode
    except (OSError, ValueError, AttributeError):
        return None
    if sys.stdin.isatty():
        return None
    if stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or (force and not stat.S_ISCHR(mode)):
        return sys.stdin.read()
    return None



def _format(fmt: str | None) -> dict[str, Any] | None:
    """``--format``: ``json`` (any JSON object) or a JSON schema, inline or ``@file``."""
    import json
    from pathlib import Path

    if fmt is None:
        return None
    if fmt == "json":
        return {"type": "json_object"}
    text = Path(fmt[1:]).read_text(encoding="utf-8") if fmt.startswith("@") else fmt
    try:
        schema = json.loads(text)
    except ValueError as exc:
        raise InvalidRequest(f"--format must be 'json' or a JSON schema: {exc}", param="format") from None
    if not isinstance(schema, dict):
        raise InvalidRequest("--format must be 'json' or a JSON schema object", param="format")
    return schema
