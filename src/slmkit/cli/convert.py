"""`slm convert`: a model in another format (ONNX for onnxruntime-genai), registered in the store."""

from __future__ import annotations

import json

import click
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from slmkit.catalog.estimate import human
from slmkit.cli.common import console, err_console, handle_errors
from slmkit.convert.onnx import ALGOS, PRECISIONS


@click.command()
@click.argument("source")
@click.option("--to", "target", required=True, type=click.Choice(["onnx"]), help="Target format.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="int4", show_default=True,
              help="Weight precision of the ONNX model.")
@click.option("--algo", type=click.Choice(ALGOS), default="default", show_default=True,
              help="Weight quantization algorithm (k_quant: mixed int4/int8, a little slower to build).")
@click.option("--name", default=None, help="Store name of the result [SOURCE:onnx-PRECISION].")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for the conversion.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def convert(source: str, target: str, precision: str, algo: str, name: str | None, threads: int | None,
            as_json: bool) -> None:
    """Convert SOURCE (a store GGUF, embedded model or Hugging Face folder) to another format."""
    from slmkit.convert.onnx import convert_to_onnx
    from slmkit.settings import load_settings
    from slmkit.store.store import Store

    store = Store(load_settings().store.home)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("converting", total=None)
        report = convert_to_onnx(store, source, precision, algo=algo, name=name, threads=threads,
                                 step=lambda message: progress.update(task, description=message))
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
        return
    bits = f", {report.source_bits} bits per weight" if report.source_bits else ""
    console.print(f"[bold]{report.name}[/] from {report.source} ({report.source_format}{bits} -> onnx {precision}"
                  f"{'' if algo == 'default' else ', ' + algo})")
    console.print(f"  size  {human(report.size)}")
    console.print(f"  time  {report.seconds:.1f} s")
    console.print(f"  serve it with  slm serve --model {report.name}")
