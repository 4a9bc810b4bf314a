"""`slm quantize`: a smaller GGUF through llama.cpp, registered in the store."""

from __future__ import annotations

import json

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

from slmkit.catalog.estimate import human
from slmkit.catalog.quant import FTYPES
from slmkit.cli.common import Aliased, console, err_console, handle_errors, quiet_llama, warn


@click.command()
@click.argument("source")
@click.option("--quant", "--type", "qtype", cls=Aliased, required=True,
              type=click.Choice(list(FTYPES), case_sensitive=False), help="Target quantization.")
@click.option("--name", default=None, help="Store name of the result [SOURCE:TYPE].")
@click.option("--allow-requantize", is_flag=True, help="Allow a source that is already quantized (loses quality).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [all cores].")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--verbose", is_flag=True, help="Show llama.cpp's own log lines [in $SLM_HOME/logs/llama.log].")
@handle_errors
def quantize(source: str, qtype: str, name: str | None, allow_requantize: bool, threads: int | None,
             as_json: bool, verbose: bool) -> None:
    """Quantize SOURCE (a store model, embedded model or GGUF path) with llama.cpp."""
    from slmkit.settings import load_settings
    from slmkit.store.quantize import quantize as run_quantize
    from slmkit.store.store import Store

    quiet_llama(verbose)
    store = Store(load_settings().store.home)
    columns = (TextColumn(f"quantizing to {qtype}"), BarColumn(), DownloadColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("quantize", total=None)
        report = run_quantize(
            store, source, qtype, name=name, allow_requantize=allow_requantize, threads=threads,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
            warn=warn)
    if report.size_after > report.size_before:
        warn(f"the result ({human(report.size_after)}) is larger than the source ({human(report.size_before)}): "
             f"{report.source} is already {report.source_type}, smaller than {report.type}")
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
        return
    console.print(f"[bold]{report.name}[/] from {report.source} ({report.source_type} -> {report.type})")
    console.print(f"  size  {human(report.size_before)} -> {human(report.size_after)} "
                  f"({report.size_after / report.size_before:.0%})")
    console.print(f"  bits per weight  {report.bpw_before} -> {report.bpw_after}")
    console.print(f"  time  {report.seconds:.1f} s")
