"""`slm run`: one-shot or interactive chat with a model, in process."""

from __future__ import annotations

import asyncio
import sys

import click

from slmkit.cli.common import console, engine_options, handle_errors
from slmkit.engine.base import Engine, GenerationRequest, SamplingParams
from slmkit.engine.factory import open_chat_engine
from slmkit.errors import EngineError
from slmkit.settings import DEFAULT_MODEL, load_settings
from slmkit.store.resolve import resolve_model


@click.command()
@click.argument("model", required=False, default=DEFAULT_MODEL)
@click.argument("prompt", required=False)
@click.option("--system", default=None, help="System prompt.")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True)
@click.option("--max-tokens", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--seed", type=int, default=None)
@engine_options
@handle_errors
def run(model: str, prompt: str | None, system: str | None, temperature: float, max_tokens: int,
        seed: int | None, parallel: int | None, ctx_size: int | None, threads: int | None) -> None:
    """Chat with MODEL: answer PROMPT and exit, or start an interactive chat."""
    settings = load_settings(engine__parallel=parallel or 1, engine__ctx_size=ctx_size, engine__threads=threads)
    resolved = resolve_model(model)
    with console.status(f"loading {resolved.name}"):
        engine = open_chat_engine(resolved.name, resolved.path, resolved.format, settings.engine)
    sampling = SamplingParams(temperature=temperature, seed=seed)
    try:
        history = [{"role": "system", "content": system}] if system else []
        if prompt is not None:
            asyncio.run(_turn(engine, history, prompt, sampling, max_tokens))
        else:
            asyncio.run(_chat(engine, history, sampling, max_tokens))
    finally:
        engine.close()


async def _turn(engine: Engine, history: list[dict[str, str]], prompt: str,
                sampling: SamplingParams, max_tokens: int) -> None:
    history.append({"role": "user", "content": prompt})
    tokens = engine.chat_tokens(engine.render_chat(history))
    budget = min(max_tokens, engine.context_length - len(tokens))
    if budget < 1:
        raise EngineError("the conversation no longer fits the context; start a new chat")
    reply = []
    async for event in engine.generate(GenerationRequest(prompt=tokens, sampling=sampling, max_tokens=budget)):
        if event.error:
            raise EngineError(event.error)
        reply.append(event.text)
        sys.stdout.write(event.text)
        sys.stdout.flush()
    sys.stdout.write("\n")
    history.append({"role": "assistant", "content": "".join(reply)})


async def _chat(engine: Engine, history: list[dict[str, str]], sampling: SamplingParams,
                max_tokens: int) -> None:
    console.print(f"chatting with [bold]{engine.name}[/]; /bye or Ctrl-D to leave, /clear to forget")
    loop = asyncio.get_running_loop()
    while True:
        try:
            line = await loop.run_in_executor(None, input, ">>> ")
        except EOFError:
            return
        if line.strip() in ("/bye", "/exit"):
            return
        if line.strip() == "/clear":
            del history[int(bool(history and history[0]["role"] == "system")):]
            continue
        if line.strip():
            await _turn(engine, history, line, sampling, max_tokens)
