"""`slm convert`: a model in another format, registered in the store.

    --to onnx   a store GGUF / embedded model / Hugging Face folder -> ONNX Runtime GenAI
                (onnxruntime-genai's builder, or Olive with --optimizer olive)
    --to gguf   a Hugging Face folder or hf.co/OWNER/REPO (llama-family LM or BERT embedder) -> GGUF
    --to mlx    a store GGUF / embedded model / Hugging Face folder / hf.co/OWNER/REPO -> MLX (mlx-lm)
"""

from __future__ import annotations

import json
from typing import Any

import click
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from slmkit.catalog.estimate import human
from slmkit.cli.common import Aliased, console, err_console, handle_errors, warn
from slmkit.convert.gguf_tensors import OUTTYPES
from slmkit.convert.mlx import QUANTS
from slmkit.convert.olive import EXECUTION_PROVIDERS, OPTIMIZERS
from slmkit.convert.onnx import ALGOS, PRECISIONS
from slmkit.errors import InvalidRequest

HELP = """Convert SOURCE to another format and register the result in the store.

\b
--to onnx: SOURCE is a store GGUF, an embedded model or a Hugging Face folder; the result
  serves on onnxruntime-genai (--quant int4|int8|fp16|fp32, --algo; --optimizer olive for Olive's workflow
  and --execution-provider for DirectML / QNN / OpenVINO targets).
--to gguf: SOURCE is a Hugging Face folder or hf.co/OWNER/REPO of a llama-family causal LM
  (Llama, Mistral, Qwen2, SmolLM) or a BERT embedder; the result serves on llama.cpp
  (--quant f32|f16|q8_0; quantize further with `slm quantize`).
--to mlx: SOURCE is a store GGUF, an embedded model, a Hugging Face folder or hf.co/OWNER/REPO
  of a family mlx-lm implements; the result serves on mlx-lm (Apple silicon; MLX's CPU build
  elsewhere) (--quant q4|q8|f16, --group-size 32|64|128).
"""


@click.command(help=HELP)
@click.argument("source")
@click.option("--to", "target", required=True, type=click.Choice(["onnx", "gguf", "mlx"]), help="Target format.")
@click.option("--quant", "--precision", "--outtype", "quant", cls=Aliased, default=None,
              help="ONNX: weight precision (int4, int8, fp32) [int4]; GGUF: tensor type of the matrices "
                   "(f32, f16, q8_0; vectors stay f32) [f16]; MLX: q4, q8 or f16 [q4].")
@click.option("--group-size", type=int, default=None, help="MLX: weights per quantization group: 32, 64, 128 [64].")
@click.option("--algo", type=click.Choice(ALGOS), default=None,
              help="ONNX: quantization algorithm (k_quant: mixed int4/int8, a little slower to build) [default].")
@click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=None,
              help="ONNX: onnxruntime-genai's builder, or Olive's ModelBuilder workflow (needs olive-ai) [builder].")
@click.option("--execution-provider", "provider", type=click.Choice(EXECUTION_PROVIDERS), default=None,
              help="ONNX with --optimizer olive: the target runtime; only cpu is tested [cpu].")
@click.option("--name", default=None,
              help="Store name of the result [SOURCE:onnx-QUANT, SOURCE:QUANT or SOURCE:mlx-QUANT].")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="ONNX, MLX: CPU threads for the conversion.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def convert(source: str, target: str, quant: str | None, group_size: int | None, algo: str | None,
            optimizer: str | None, provider: str | None, name: str | None, threads: int | None, as_json: bool) -> None:
    from slmkit.settings import load_settings
    from slmkit.store.store import Store

    allowed = {"gguf": OUTTYPES, "onnx": PRECISIONS, "mlx": tuple(QUANTS)}[target]
    if quant is not None and quant not in allowed:
        raise InvalidRequest(f"--quant {quant} does not apply to --to {target}; choose one of {', '.join(allowed)}"
                             + (" (MLX has no k-quants; those are llama.cpp's: see `slm quantize`)"
                                if target == "mlx" else ""))
    precision, outtype = (None, quant) if target == "gguf" else (quant, None)
    _check_flags(target, algo=algo, optimizer=optimizer, provider=provider, threads=threads, group_size=group_size)
    store = Store(load_settings().store.home)
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task("converting", total=None)

        def step(message: str) -> None:
            progress.update(task, description=message)

        if target == "gguf":
            from slmkit.convert.to_gguf import convert_to_gguf

            report: Any = convert_to_gguf(store, source, outtype or "f16", name=name, step=step)
        elif target == "mlx":
            from slmkit.convert.mlx import convert_to_mlx

            report = convert_to_mlx(store, source, quant or "q4", group_size=group_size or 64, name=name,
                                    threads=threads, step=step)
        else:
            from slmkit.convert.onnx import convert_to_onnx

            report = convert_to_onnx(store, source, precision or "int4", algo=algo or "default", name=name,
                                     threads=threads, optimizer=optimizer or "builder",
                                     provider=provider or "cpu", step=step,
                                     warn=lambda m: progress.console.print(f"[yellow]warning:[/] {escape(m)}",
                                                                           highlight=False, soft_wrap=True))
    if target in ("gguf", "mlx"):
        for warning in report.warnings:
            warn(warning)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
        return
    if target == "gguf":
        console.print(f"[bold]{report.name}[/] from {report.source} ({report.architecture} -> gguf "
                      f"{report.gguf_architecture} {report.outtype}, {report.tensors} tensors)")
    elif target == "mlx":
        bits = f", {report.source_bits} bits per weight" if report.source_bits else ""
        groups = f", groups of {report.group_size}" if report.quant != "f16" else ""
        console.print(f"[bold]{report.name}[/] from {report.source} ({report.source_format}{bits} -> mlx "
                      f"{report.quant}{groups})")
    else:
        bits = f", {report.source_bits} bits per weight" if report.source_bits else ""
        how = "" if report.algo == "default" else f", {report.algo}"
        how += "" if report.optimizer == "builder" else f", olive for {report.provider}"
        console.print(f"[bold]{report.name}[/] from {report.source} ({report.source_format}{bits} -> onnx "
                      f"{report.precision}{how})")
    console.print(f"  size  {human(report.size)}")
    console.print(f"  time  {report.seconds:.1f} s")
    console.print(f"  serve it with  slm serve --model {report.name}")
    if target == "mlx":
        console.print(f"  check it with  {report.drift_check}")


_TARGET_FLAGS = {"onnx": ("algo", "optimizer", "provider", "threads"), "gguf": (), "mlx": ("group_size", "threads")}


def _check_flags(target: str, **given: Any) -> None:
    """Options of the other targets are refused, not silently ignored."""
    wrong = [k for k, v in given.items() if v is not None and k not in _TARGET_FLAGS[target]]
    if wrong:
        flags = ", ".join("--" + {"provider": "execution-provider"}.get(k, k).replace("_", "-") for k in wrong)
        raise InvalidRequest(f"{flags} do{'es' if len(wrong) == 1 else ''} not apply to --to {target}")
    if given["provider"] not in (None, "cpu") and given["optimizer"] != "olive":
        raise InvalidRequest("--execution-provider other than cpu needs --optimizer olive")
