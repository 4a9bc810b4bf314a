"""`slm eval MODEL [MODEL ...]`: perplexity, the task suite, and drift against the first model."""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from slmkit.bench.report import now_iso, write_atomic
from slmkit.cli.common import console, err_console, fail, handle_errors
from slmkit.engine.factory import open_chat_engine
from slmkit.errors import InvalidRequest
from slmkit.eval.gates import check_gate_inputs, evaluate_gates, failure_message
from slmkit.eval.kv import Evaluated, kv_variants
from slmkit.eval.perplexity import LogitSource, drift, perplexity, read_text
from slmkit.eval.report import SCHEMA, markdown_tables, write_eval_plot
from slmkit.eval.tasks import CaseResult, TaskCase, builtin_suite, load_suite, pass_rates, run_suite
from slmkit.settings import load_settings
from slmkit.store.resolve import resolve_model


@click.command("eval")
@click.argument("models", nargs=-1, required=True)
@click.option("--text", type=click.Path(path_type=Path), default=None,
              help="Text for perplexity and drift [a public-domain text shipped with slmkit].")
@click.option("--window", type=click.IntRange(min=16), default=512, show_default=True, help="Tokens per window.")
@click.option("--stride", type=click.IntRange(min=1), default=None, help="Window step [window/2].")
@click.option("--max-tokens", type=click.IntRange(min=16), default=None, help="Score at most this many tokens.")
@click.option("--suite", type=click.Path(path_type=Path), default=None, help="JSONL task cases [built-in suite].")
@click.option("--no-tasks", is_flag=True, help="Skip the task suite.")
@click.option("--no-perplexity", is_flag=True, help="Skip perplexity and drift.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [all cores].")
@click.option("--parallel", type=click.IntRange(min=1, max=64), default=4, show_default=True,
              help="Task cases generated at once.")
@click.option("--output-dir", "-o", type=click.Path(path_type=Path), default=None,
              help="Write NAME.json, NAME.md and NAME.png here.")
@click.option("--name", default="eval", show_default=True, help="File name prefix in --output-dir.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG chart.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result instead of the tables.")
@click.option("--kv-types", default=None, metavar="TYPES",
              help="Drift of KV cache types on one GGUF model, e.g. f16,q8_0,q4_0 (the first is the reference; "
                   "keys and values alike, as slm serve --cache-type-k/-v).")
@click.option("--min-pass-rate", type=click.FloatRange(0, 1), default=None,
              help="Quality gate: exit 1 when a model passes less than this fraction of the task cases.")
@click.option("--max-perplexity", type=click.FloatRange(min=1), default=None,
              help="Quality gate: exit 1 when a model's perplexity is above this.")
@handle_errors
def eval_command(models: tuple[str, ...], text: Path | None, window: int, stride: int | None, max_tokens: int | None,
                 suite: Path | None, no_tasks: bool, no_perplexity: bool, threads: int | None, parallel: int,
                 output_dir: Path | None, name: str, no_plots: bool, as_json: bool, kv_types: str | None,
                 min_pass_rate: float | None, max_perplexity: float | None) -> None:
    """Evaluate MODELS; with several, the first is the reference the others drift from.

    With --min-pass-rate or --max-perplexity it is a quality gate: the results are shown and
    written as usual, then the command exits 1 with one line naming each bound a model broke."""
    check_gate_inputs(min_pass_rate, max_perplexity, has_tasks=not no_tasks, has_perplexity=not no_perplexity)
    resolved = kv_variants([resolve_model(m) for m in models], kv_types)
    stride = stride or max(1, window // 2)
    if stride > window:
        raise InvalidRequest("--stride may not exceed --window")
    cases = None if no_tasks else (load_suite(suite) if suite else builtin_suite())
    corpus, corpus_name = (None, None) if no_perplexity else read_text(text)
    n_threads = load_settings(engine__threads=threads).engine.n_threads()
    doc: dict[str, Any] = {
        "schema": SCHEMA, "started_at": now_iso(), "command": ["slm", "eval", *sys.argv[2:]],
        "config": {"window": window, "stride": stride, "max_tokens": max_tokens, "threads": n_threads,
                   "text": corpus_name, "suite": str(suite) if suite else ("built-in" if cases else None),
                   "reference": resolved[0].name},
        "models": [{"name": r.name, "file": str(r.path), "size_bytes": _size(r.path),
                    **({"kv_type": r.kv_type} if r.kv_type else {})} for r in resolved],
        "partial": False, "partial_reason": None,
    }
    try:
        with CtrlC() as ctrl_c:
            if corpus is not None:
                _quality(doc, resolved, corpus, window, stride, max_tokens, n_threads, ctrl_c)
            if cases is not None:
                for entry, model in zip(doc["models"], resolved, strict=True):
                    entry["tasks"] = _tasks(model, cases, parallel, n_threads, ctrl_c)
                    ctrl_c.check()
    except KeyboardInterrupt:
        doc["partial"], doc["partial_reason"] = True, "interrupted"
    doc["finished_at"] = now_iso()
    if not doc["partial"] and (min_pass_rate is not None or max_perplexity is not None):
        doc["gates"] = evaluate_gates(doc, min_pass_rate, max_perplexity)
    _emit(doc, output_dir, name, no_plots, as_json)
    if doc["partial"]:
        fail("interrupted; partial results " + (f"written to {output_dir}" if output_dir else "shown above"), 130)
    message = failure_message(doc.get("gates", []))
    if message:
        fail(message)


class CtrlC:
    """Ctrl-C as a flag, checked between windows and cases. A KeyboardInterrupt raised at a
    random point could land inside llama.cpp's log callback, where ctypes swallows it."""

    def __init__(self) -> None:
        self.flag = threading.Event()
        self._previous: Any = None

    def __enter__(self) -> CtrlC:
        self._previous = signal.signal(signal.SIGINT, lambda _sig, _frame: self.flag.set())
        return self

    def __exit__(self, *_exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def check(self) -> None:
        if self.flag.is_set():
            raise KeyboardInterrupt


def _status(label: str, ctrl_c: CtrlC) -> tuple[Any, Callable[[int, int], None]]:
    status = err_console.status(label)

    def tick(i: int, n: int) -> None:
        ctrl_c.check()
        status.update(f"{label}: window {i}/{n}")

    return status, tick


def _quality(doc: dict[str, Any], models: list[Evaluated], corpus: str, window: int, stride: int,
             max_tokens: int | None, threads: int, ctrl_c: CtrlC) -> None:
    reference = _logit_source(models[0], window, threads)
    try:
        if len(models) == 1:
            status, tick = _status(f"perplexity of {models[0].name}", ctrl_c)
            with status:
                doc["models"][0]["perplexity"] = perplexity(reference, corpus, window=window, stride=stride,
                                                            max_tokens=max_tokens, progress=tick)
            return
        others: list[LogitSource] = []
        try:
            for model in models[1:]:
                others.append(_logit_source(model, window, threads))
            status, tick = _status(f"drift from {models[0].name}", ctrl_c)
            with status:
                results = drift(reference, others, corpus, window=window, stride=stride, max_tokens=max_tokens,
                                progress=tick)
        finally:
            for other in others:
                other.close()
        for entry, result in zip(doc["models"][1:], results, strict=True):
            entry["drift"] = result
            entry["perplexity"] = _ppl_part(result, result["perplexity"])
        doc["models"][0]["perplexity"] = _ppl_part(results[0], results[0]["perplexity_reference"])
    finally:
        reference.close()


def _size(path: Path) -> int:
    """A GGUF file's size, or the total of an ONNX or MLX model folder."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _logit_source(model: Evaluated, window: int, threads: int) -> LogitSource:
    """llama.cpp's logits for a GGUF, onnxruntime-genai's for an ONNX model, mlx-lm's for an MLX one."""
    if model.format == "onnx":
        from slmkit.eval.onnx_logits import OnnxLogitSource

        return OnnxLogitSource(model.path, window=window, threads=threads)  # type: ignore[return-value]
    if model.format == "mlx":
        from slmkit.eval.mlx_logits import MlxLogitSource

        return MlxLogitSource(model.path, window=window, threads=threads)  # type: ignore[return-value]
    return LogitSource(model.path, window=window, threads=threads, kv_type=model.kv_type or "f16")


def _ppl_part(result: dict[str, Any], value: float) -> dict[str, Any]:
    keys = ("tokens", "scored_tokens", "windows", "window", "stride")
    return {**{k: result[k] for k in keys}, "perplexity": value}


def _tasks(model: Evaluated, cases: list[TaskCase], parallel: int, threads: int,
           ctrl_c: CtrlC) -> dict[str, Any]:
    kv = {"engine__cache_type_k": model.kv_type, "engine__cache_type_v": model.kv_type} if model.kv_type else {}
    settings = load_settings(engine__parallel=parallel, engine__ctx_size=1024, engine__threads=threads, **kv)
    with err_console.status(f"task suite on {model.name}") as status:
        engine = open_chat_engine(model.name, model.path, model.format, settings.engine)
        done: list[str] = []

        def tick(result: CaseResult) -> None:
            done.append(result.id)
            status.update(f"task suite on {model.name}: {len(done)}/{len(cases)}")

        try:
            results = run_suite(engine, cases, parallel, tick, stop=ctrl_c.flag.is_set)
        finally:
            engine.close()
    return {"pass_rates": pass_rates(results),
            "cases": [{"id": r.id, "task": r.task, "passed": r.passed, "failed_checks": r.failures,
                       "finish_reason": r.finish_reason, "output": r.output} for r in results]}


def _emit(doc: dict[str, Any], output_dir: Path | None, name: str, no_plots: bool, as_json: bool) -> None:
    tables = markdown_tables(doc)
    if output_dir is not None:
        write_atomic(output_dir / f"{name}.json", json.dumps(doc, indent=2))
        write_atomic(output_dir / f"{name}.md", tables + "\n")
        if not no_plots:
            try:
                write_eval_plot(doc, output_dir / f"{name}.png")
            except InvalidRequest as exc:  # matplotlib is an extra; the results are written already
                err_console.print(f"note: {escape(exc.message)}")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        console.print(tables, highlight=False, soft_wrap=True)
