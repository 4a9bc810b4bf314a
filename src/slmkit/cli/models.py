"""`slm models catalog|estimate` and `slm recommend`: choosing a model before downloading it."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from slmkit.catalog.estimate import MemoryEstimate, estimate_entry, estimate_file, human, parse_size
from slmkit.catalog.models import TASKS, entries, find
from slmkit.catalog.quant import KV_BYTES
from slmkit.cli.common import console, handle_errors
from slmkit.errors import ModelNotFound


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
    from slmkit.store.resolve import resolve_model

    try:
        resolved = resolve_model(name, load_settings().store.home)
    except ModelNotFound:
        resolved = None
    if resolved is not None and quant is None and Path(resolved.path).is_file():
        return estimate_file(resolved.path, name=resolved.name, ctx=ctx, parallel=parallel, kv_type=kv_type)
    base, _, tag = name.partition(":")
    entry = find(base)
    return estimate_entry(entry, entry.file_for(quant or tag or None)[0] if (quant or tag) else "q4_k_m",
                          ctx=ctx, parallel=parallel, kv_type=kv_type)


@models.command("estimate")
@click.argument("name")
@click.option("--quant", default=None, help="Quantization (catalog models) [q4_k_m].")
@click.option("--ctx", type=click.IntRange(min=64), default=4096, show_default=True, help="Context per slot.")
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
@click.option("--ctx", type=click.IntRange(min=64), default=4096, show_default=True)
@click.option("--parallel", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--ram", default=None, help="Plan for this much RAM (e.g. 16G) instead of this machine's.")
@click.option("--gpu-mem", default=None, help="Plan for this much GPU memory (e.g. 24G; 0 for none).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@handle_errors
def recommend_cmd(task: str, ctx: int, parallel: int, ram: str | None, gpu_mem: str | None, as_json: bool) -> None:
    """Pick the largest model and best quantization that fit this (or a planned) machine."""
    from slmkit.catalog.hardware import probe
    from slmkit.catalog.recommend import recommend
    from slmkit.settings import load_settings

    hw = probe(load_settings().store.home, ram=parse_size(ram) if ram else None,
               gpu_mem=parse_size(gpu_mem) if gpu_mem is not None else None)
    rec = recommend(hw, task=task, ctx=ctx, parallel=parallel)
    if as_json:
        click.echo(json.dumps({"hardware": hw.to_dict(), **rec.to_dict()}, indent=1))
        return
    gpus = ", ".join(f"{g.name} ({human(g.memory_free)} free)" for g in hw.gpus) or "none"
    console.print(f"RAM {human(hw.ram_total)} ({human(hw.ram_available)} available), {hw.cores} cores, "
                  f"{' '.join(hw.cpu_features) or 'no SIMD flags found'}; GPUs: {gpus}; "
                  f"disk free {human(hw.disk_free)}", highlight=False)
    if rec.choice is not None:
        console.print(f"[bold green]recommended:[/] slm pull {rec.choice.entry.name}:{rec.choice.quant}")
    for line in rec.reasons:
        console.print(f"  - {line}", highlight=False)
    if rec.choice is None:
        raise SystemExit(1)
