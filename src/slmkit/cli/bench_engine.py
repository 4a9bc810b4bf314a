"""`slm bench --engine llamacpp|mlx --model NAME`: the in-process engine bench."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from rich.markup import escape

from slmkit.bench.engine_bench import SCHEMA, EngineBench, EngineBenchConfig, engine_markdown, write_engine_plot
from slmkit.bench.report import now_iso, write_atomic
from slmkit.cli.common import console, err_console
from slmkit.errors import InvalidRequest
from slmkit.settings import load_settings
from slmkit.store.resolve import resolve_model

_FORMATS = {"llamacpp": "gguf", "mlx": "mlx"}
_TITLES = {"llamacpp": "llama.cpp", "mlx": "MLX"}


def run_engine_bench(model: str, batch_sizes: list[int], prompt_tokens: int, gen_tokens: int, repeats: int,
                     threads: int | None, output_dir: Path | None, name: str, no_plots: bool, as_json: bool,
                     engine_name: str = "llamacpp") -> None:
    resolved = resolve_model(model)
    if resolved.format != _FORMATS[engine_name]:
        raise InvalidRequest(f"{resolved.name} is in {resolved.format} format; --engine {engine_name} benches "
                             f"{_FORMATS[engine_name]} models")
    config = EngineBenchConfig(batch_sizes=batch_sizes, prompt_tokens=prompt_tokens, gen_tokens=gen_tokens,
                               repeats=repeats, threads=load_settings(engine__threads=threads).engine.n_threads())
    started = now_iso()
    with err_console.status(f"loading {resolved.name}") as status:
        engine = _bench(engine_name, resolved.path, config)
        try:
            status.update(f"benching {resolved.name}")
            rows = engine.run(lambda r: err_console.print(
                f"batch {r['batch_size']}: pp {r['pp_tokens_per_s']:.1f} tok/s, tg {r['tg_tokens_per_s']:.1f} tok/s"))
        finally:
            engine.close()
    doc = {"schema": SCHEMA, "kind": "engine", "engine": engine_name, "model": resolved.name,
           "file": str(resolved.path), "started_at": started, "finished_at": now_iso(),
           "command": ["slm", "bench", *sys.argv[2:]], "partial": False,
           "config": {"batch_sizes": batch_sizes, "prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens,
                      "repeats": repeats, "threads": config.threads}, "results": rows}
    table = engine_markdown(rows)
    if output_dir is not None:
        write_atomic(output_dir / f"{name}.json", json.dumps(doc, indent=2))
        write_atomic(output_dir / f"{name}.md", table + "\n")
        if not no_plots:
            try:
                write_engine_plot(rows, output_dir / f"{name}_engine.png",
                                  f"{_TITLES[engine_name]} in process: {resolved.name}")
            except InvalidRequest as exc:  # matplotlib is an extra; the results are written already
                err_console.print(f"note: {escape(exc.message)}")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        console.print(table, highlight=False, soft_wrap=True)


def _bench(engine_name: str, path: Path, config: EngineBenchConfig) -> EngineBench:
    if engine_name == "mlx":
        from slmkit.bench.mlx_bench import MlxEngineBench

        return MlxEngineBench(path, config)
    return EngineBench(path, config)
