"""`slm models catalog|estimate` and `slm recommend`: choosing a model before downloading it."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from slmkit.catalog.estimate import MemoryEstimate, estimate_entry, estimate_file, human, parse_size
from slmkit.catalog.models import TASKS, entries, find
from slmkit.catalog.quant import KV_BYTES
from slmkit.cli.common import Aliased, console, handle_errors
from slmkit.errors import ModelNotFound

KV_CHOICES = ["f16", "q8_0", "q4_0"]  # the KV cache types slm serve offers (--cache-type-k/-v)


@click.group()
def models() -> None:
    """The catalog of known small models and their memory needs."""


@models.command("catalog")
@click.option("--class", "size", type=click.Choice(["micro", "small", "medium"]), default=None,
              help="Only this size class (micro <1.5B, small 1.5-13.9B, medium 14-30B).")
@click.option("--task", type=click.Choice(TASKS), default=None, help="Only models for this task.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def catalog(size: str | None, task: str | None, as_json: bool) -> None:
    """List the catalog."""
    chosen = entries(size=size, task=task)
    if as_json:
        click.echo(json.dumps([e.raw for e in chosen], indent=1))
        return
    table = Table("name", "params", "class", "layers", "ctx", "license", "tasks", "quants", "mlx", box=None)
    for e in chosen:
        table.add_row(e.name, f"{e.parameters / 1e9:.2f}B", e.size_class, str(e.architecture.layers),
                      str(e.architecture.max_context), e.license, ",".join(e.tasks), " ".join(e.quants),
                      " ".join(e.mlx) or "-")
    console.print(table)


def _estimate(name: str, quant: str | None, ctx: int, parallel: int, kv_type: str) -> MemoryEstimate:
    """A GGUF we can read (store, embedded, path) gives real numbers; otherwise the catalog's."""
    from slmkit.settings import load_settings
    from slmkit.store.aliases import expand
    from slmkit.store.resolve import resolve_model

    try:
        resolved = resolve_model(name, load_settings().store.home)
    except ModelNotFound:
        resolved = None
    if resolved is not None and quant is None and Path(resolved.path).is_file():
        return estimate_file(resolved.path, name=resolved.name, ctx=ctx, parallel=parallel, kv_type=kv_type)
    base, _, tag = expand(name).partition(":")  # qwen3:4b -> qwen3-4b, qwen3:4b-q8_0 -> qwen3-4b:q8_0
    entry = find(base)
    return estimate_entry(entry, entry.file_for(quant or tag or None)[0] if (quant or tag) else "q4_k_m",
                          ctx=ctx, parallel=parallel, kv_type=kv_type)


@models.command("estimate")
@click.argument("name")
@click.option("--quant", default=None, help="Quantization (catalog models) [q4_k_m].")
@click.option("--ctx-size", "--ctx", "ctx", cls=Aliased, type=click.IntRange(min=64), default=4096, show_default=True,
              help="Context per slot.")
@click.option("--parallel", type=click.IntRange(min=1), default=4, show_default=True, help="Slots.")
@click.option("--kv-type", type=click.Choice(list(KV_BYTES)), default="f16", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def estimate_cmd(name: str, quant: str | None, ctx: int, parallel: int, kv_type: str, as_json: bool) -> None:
    """RAM and disk NAME needs (a catalog name, a pulled model or a GGUF path)."""
    est = _estimate(name, quant, ctx, parallel, kv_type)
    if as_json:
        click.echo(json.dumps(est.to_dict(), indent=1))
        return
    console.print(f"[bold]{est.model}[/] {est.quant}, {parallel} slot(s) x {ctx} tokens, KV {kv_type}")
    for label, value in (("weights", est.weights_bytes), ("KV cache", est.kv_cache_bytes),
                         ("logits", est.output_bytes), ("compute", est.compute_bytes),
                         ("runtime", est.runtime_bytes)):
        console.print(f"  {label:<9} {human(value):>10}")
    console.print(f"  [bold]{'RAM':<9} {human(est.total_bytes):>10}[/]")
    console.print(f"  {'disk':<9} {human(est.disk_bytes):>10}")


@click.command("recommend")
@click.option("--task", type=click.Choice(TASKS), default="chat", show_default=True)
@click.option("--ctx-size", "--ctx", "ctx", cls=Aliased, type=click.IntRange(min=64), default=4096, show_default=True,
              help="Context per slot.")
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--min-speed", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Tokens/s the pick must reach (estimated batch-1 decode); 0: memory only.")
@click.option("--ram", default=None, help="Plan for this much RAM (e.g. 16G) instead of this machine's.")
@click.option("--gpu-mem", default=None, help="Plan for this much GPU memory (e.g. 24G; 0 for none).")
@click.option("--cores", type=click.IntRange(min=1), default=None, help="Plan for this many physical cores.")
@click.option("--bandwidth", default=None,
              help="Plan for this memory bandwidth in GB/s (e.g. 50) instead of measuring this machine's.")
@click.option("--cache-type-k", type=click.Choice(KV_CHOICES), default="f16", show_default=True,
              help="KV cache type of keys the server will use (slm serve --cache-type-k).")
@click.option("--cache-type-v", type=click.Choice(KV_CHOICES), default="f16", show_default=True,
              help="KV cache type of values.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def recommend_cmd(task: str, ctx: int, parallel: int, min_speed: float, ram: str | None, gpu_mem: str | None,
                  cores: int | None, bandwidth: str | None, cache_type_k: str, cache_type_v: str,
                  as_json: bool) -> None:
    """Pick a model for this (or a planned) machine: made for the task, fitting its memory and
    fast enough (--min-speed); among those the largest, at the best quantization."""
    from slmkit.catalog.hardware import probe
    from slmkit.catalog.recommend import recommend
    from slmkit.settings import load_settings

    hw = probe(load_settings().store.home, ram=parse_size(ram) if ram else None,
               gpu_mem=parse_size(gpu_mem) if gpu_mem is not None else None, cores=cores,
               bandwidth=_gbps(bandwidth) if bandwidth else None, measure=min_speed > 0)
    rec = recommend(hw, task=task, ctx=ctx, parallel=parallel, min_speed=min_speed, cache_type_k=cache_type_k,
                    cache_type_v=cache_type_v)
    if as_json:
        click.echo(json.dumps({"hardware": hw.to_dict(), **rec.to_dict()}, indent=1))
        return
    gpus = ", ".join(f"{g.name} ({human(g.memory_free)} free)" for g in hw.gpus) or "none"
    console.print(f"RAM {human(hw.ram_total)} ({human(hw.ram_available)} available), {hw.cores} cores, "
                  f"{' '.join(hw.cpu_features) or 'no SIMD flags found'}; GPUs: {gpus}; "
                  f"disk free {human(hw.disk_free)}", highlight=False)
    if hw.memory_bandwidth:
        console.print(f"memory bandwidth {hw.memory_bandwidth / 1e9:.1f} GB/s over {hw.physical_cores} core(s)"
                      f"{' (as given)' if 'bandwidth' in hw.overridden else ' (measured now)'}", highlight=False)
    if rec.choice is not None:
        console.print(f"[bold green]recommended:[/] slm pull {rec.choice.entry.name}:{rec.choice.quant}")
    for line in rec.reasons:
        console.print(f"  - {escape(line)}", highlight=False)
    if rec.choice is None:
        raise SystemExit(1)


def _gbps(text: str) -> float:
    try:
        value = float(text.strip().lower().removesuffix("gb/s").removesuffix("g").strip())
    except ValueError:
        from slmkit.errors import InvalidRequest

        raise InvalidRequest(f"--bandwidth takes GB/s, such as 50; got '{text}'") from None
    if value <= 0:
        from slmkit.errors import InvalidRequest

        raise InvalidRequest("--bandwidth must be positive")
    return value * 1e9
