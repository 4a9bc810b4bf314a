"""`slm bench`: load-test OpenAI/Ollama-compatible servers, or the engine in process;
`slm bench compare A.json B.json`: ratio table of two results."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import signal
import sys
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from slmkit.bench.grounded import grounded_workload
from slmkit.bench.protocols import Endpoint, SendOptions
from slmkit.bench.records import RequestRecord
from slmkit.bench.report import (
    COLUMNS,
    build_document,
    compare_markdown,
    compare_rows,
    load_document,
    markdown_table,
    now_iso,
    regression_message,
    regressions,
    write_atomic,
)
from slmkit.bench.runner import BenchConfig, BenchRunner, Level
from slmkit.bench.workload import Workload, fixed_workload, jsonl_workload, mixed_workload
from slmkit.cli.common import console, err_console, fail, handle_errors
from slmkit.errors import InvalidRequest

_HOST_PORT = re.compile(r"^[A-Za-z0-9.-]+:\d+(/.*)?$")  # localhost:8080 is a URL, not a model name


class DefaultToRun(click.Group):
    """`slm bench URL ...` means `slm bench run URL ...`; `slm bench compare` is the other verb."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultToRun)
def bench() -> None:
    """Measure serving speed.

    \b
    slm bench URL_OR_MODEL ... [options]     load-test servers (options: slm bench run --help)
    slm bench --engine llamacpp|mlx --model M    the engine in process, without HTTP
    slm bench compare A.json B.json          ratio table of two results
    """


def _ints(value: str, what: str) -> list[int]:
    try:
        out = [int(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise InvalidRequest(f"{what} must be comma-separated integers, got {value!r}") from None
    if not out or min(out) < 1:
        raise InvalidRequest(f"{what} must be positive integers, got {value!r}")
    return out


def _floats(value: str, what: str) -> list[float]:
    try:
        out = [float(x) for x in value.split(",") if x.strip()]
    except ValueError:
        raise InvalidRequest(f"{what} must be comma-separated numbers, got {value!r}") from None
    if not out or min(out) <= 0:
        raise InvalidRequest(f"{what} must be positive, got {value!r}")
    return out


class RichProgress:
    """The live display: one bar per run, with its running tokens/s."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: Any = None
        self.tokens = 0

    def warmup(self, label: str, done: int, total: int) -> None:
        """Warm-up requests (not measured) show as their own bar, so a slow first load is visible."""
        if done == 0:
            self.task = self.progress.add_task(f"{label} warm-up", total=total, rate="not measured")
        self.progress.update(self.task, completed=done)

    def run_started(self, label: str, total: int | None) -> None:
        self.tokens = 0
        self.task = self.progress.add_task(label, total=total, rate="")

    def request_done(self, record: RequestRecord) -> None:
        self.tokens += record.output_tokens or record.chunks  # usage-less servers are counted after the run
        elapsed = self.progress.tasks[-1].elapsed or 0.0
        rate = f"{self.tokens / elapsed:.1f} tok/s" if elapsed > 0 else ""
        errors = "" if record.ok else f" last error: {record.error_kind}"
        self.progress.update(self.task, advance=1, rate=rate + errors)

    def run_finished(self, run: dict[str, Any]) -> None:
        self.progress.update(self.task, total=run["requests"]["sent"], completed=run["requests"]["sent"],
                             rate=f"{run['output_tokens_per_s']:.1f} tok/s, {run['requests']['failed']} failed")


@bench.command("run")
@click.argument("targets", nargs=-1)
@click.option("--spawn", "spawn", multiple=True, metavar="MODEL", help="Start `slm serve MODEL` and bench it.")
@click.option("--api", type=click.Choice(["openai", "ollama"]), default="openai", show_default=True,
              help="API of URL targets without an openai+/ollama+ prefix.")
@click.option("--model", default=None, help="Model to request [first the server lists]; the model for --engine.")
@click.option("--pid", "pids", type=int, multiple=True, help="Watch this server process (peak RSS, CPU); "
              "repeat to match URL targets in order.")
@click.option("--concurrency", default="1", show_default=True, help="Concurrency sweep, e.g. 1,4,8,16.")
@click.option("--rate", default=None, help="Poisson request rate(s) in req/s, e.g. 0.5,1,2 (replaces --concurrency).")
@click.option("--max-concurrency", type=click.IntRange(min=1), default=None, help="Cap in flight in rate mode.")
@click.option("--requests", type=click.IntRange(min=1), default=None, help="Requests per run [4x concurrency, >= 8].")
@click.option("--duration", type=click.FloatRange(min=0.1), default=None, help="Seconds per run (instead of a count).")
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True, help="Unrecorded requests first.")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--workload", type=click.Choice(["mixed", "fixed", "grounded"]), default="mixed", show_default=True,
              help="mixed: chat questions; fixed: --prompt-tokens in, --max-tokens out; grounded: extract, "
                   "rewrite or quote from a 300-600-token document.")
@click.option("--prompts", type=click.Path(path_type=Path), default=None, help="JSONL file of prompts.")
@click.option("--prompt-tokens", type=click.IntRange(min=1), default=128, show_default=True,
              help="Prompt length (words) of the fixed workload; prompt tokens for --engine.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Output tokens (fixed: exact target [128]; mixed: cap; prompts file: default [128]).")
@click.option("--ignore-eos/--no-ignore-eos", default=None, help="Ask for the full budget [on for fixed].")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--salt", default=None, help="Each run's prompts start with [SALT.N], so no prompt cache filled by an "
              "earlier run answers them [random for each invocation; 'none': unsalted].")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True, help="Per request, s.")
@click.option("--parallel", type=click.IntRange(min=1), default=None, help="Slots of spawned servers [max level].")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Threads of spawned servers / --engine.")
@click.option("--ctx-size", type=click.IntRange(min=64), default=None, help="Context per slot of spawned servers.")
@click.option("--engine", type=click.Choice(["llamacpp", "mlx"]), default=None,
              help="Bench the engine in process (llamacpp: a GGUF model; mlx: an MLX one).")
@click.option("--batch-sizes", default="1,2,4,8", show_default=True, help="--engine: sequences per batch.")
@click.option("--gen-tokens", type=click.IntRange(min=1), default=32, show_default=True, help="--engine: tg steps.")
@click.option("--output-dir", "-o", type=click.Path(path_type=Path), default=None,
              help="Write NAME.json, NAME.md and PNG plots here.")
@click.option("--name", default="bench", show_default=True, help="File name prefix in --output-dir.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON result instead of the table.")
@handle_errors
def run_bench(targets: tuple[str, ...], spawn: tuple[str, ...], api: str, model: str | None, pids: tuple[int, ...],
              concurrency: str, rate: str | None, max_concurrency: int | None, requests: int | None,
              duration: float | None, warmup: int, repeats: int, workload: str, prompts: Path | None,
              prompt_tokens: int, max_tokens: int | None, ignore_eos: bool | None, temperature: float, seed: int,
              salt: str | None, timeout: float, parallel: int | None, threads: int | None, ctx_size: int | None,
              engine: str | None,
              batch_sizes: str, gen_tokens: int, output_dir: Path | None, name: str, no_plots: bool,
              as_json: bool) -> None:
    """Load-test TARGETS: URLs ([label=][openai+|ollama+]URL[#model]) or model names to spawn."""
    if engine:
        from slmkit.cli.bench_engine import run_engine_bench

        if not model:
            raise InvalidRequest("--engine needs --model NAME")
        run_engine_bench(model, _ints(batch_sizes, "--batch-sizes"), prompt_tokens, gen_tokens, repeats,
                         threads, output_dir, name, no_plots, as_json, engine)
        return
    levels = ([Level("rate", r) for r in _floats(rate, "--rate")] if rate
              else [Level("concurrency", c) for c in _ints(concurrency, "--concurrency")])
    work = _workload(workload, prompts, prompt_tokens, max_tokens)
    send = SendOptions(temperature=temperature, seed=seed,
                       ignore_eos=work.ignore_eos if ignore_eos is None else ignore_eos)
    salt = secrets.token_hex(4) if salt is None else (None if salt.lower() == "none" else salt)
    config = BenchConfig(levels=levels, requests=requests, duration_s=duration, max_concurrency=max_concurrency,
                         warmup=warmup, repeats=repeats, timeout_s=timeout, seed=seed, send=send, salt=salt)
    targets = tuple(f"http://{t}" if _HOST_PORT.match(t) else t for t in targets)
    spawn_models = list(spawn) + [t for t in targets if "://" not in t]
    urls = [t for t in targets if "://" in t]
    if not urls and not spawn_models:
        raise InvalidRequest("give at least one URL or model to bench (or --spawn MODEL)")
    if len(pids) > len(urls):
        raise InvalidRequest("more --pid values than URL targets")
    endpoints = [Endpoint.parse(u, api=api, model=model) for u in urls]  # type: ignore[arg-type]
    for ep, pid in zip(endpoints, pids, strict=False):
        ep.pid = pid
    slots = parallel or max(int(lv.value) for lv in levels) if not rate else parallel
    with ExitStack() as stack:
        endpoints += _spawn_all(stack, spawn_models, slots, threads, ctx_size)
        started = now_iso()
        outcome = _run_live(BenchRunner(endpoints, work, config, None), as_json)
    doc = build_document(kind="http", started_at=started, command=["slm", "bench", *sys.argv[2:]],
                         config={"levels": [asdict(lv) for lv in levels], "workload": work.name,
                                 "workload_detail": work.description, **_config_json(config)},
                         endpoints=outcome.endpoints, runs=outcome.runs, partial=outcome.partial,
                         partial_reason=outcome.partial_reason)
    _emit(doc, output_dir, name, no_plots, as_json)
    if outcome.partial:
        code = 130 if outcome.partial_reason == "interrupted" else 1
        where = f"; partial results written to {output_dir}" if output_dir else ""
        fail(f"{outcome.partial_reason}{where}", code)


def _workload(kind: str, prompts: Path | None, prompt_tokens: int, max_tokens: int | None) -> Workload:
    if prompts is not None:
        return jsonl_workload(prompts, max_tokens or 128)
    if kind == "fixed":
        return fixed_workload(prompt_tokens, max_tokens or 128)
    if kind == "grounded":
        return grounded_workload(max_tokens)
    return mixed_workload(max_tokens)


def _config_json(config: BenchConfig) -> dict[str, Any]:
    return {"requests_per_run": config.requests, "duration_s": config.duration_s,
            "max_concurrency": config.max_concurrency, "warmup": config.warmup, "repeats": config.repeats,
            "timeout_s": config.timeout_s, "seed": config.seed, "temperature": config.send.temperature,
            "ignore_eos": config.send.ignore_eos, "salt": config.salt}


def _spawn_all(stack: ExitStack, models: list[str], parallel: int | None, threads: int | None,
               ctx_size: int | None) -> list[Endpoint]:
    from slmkit.bench.resources import SpawnedServer

    out = []
    for spec in models:
        with err_console.status(f"starting slm serve {spec}"):
            server = SpawnedServer(spec, parallel=parallel, threads=threads, ctx_size=ctx_size)
        stack.callback(server.close)
        out.append(Endpoint(label=f"slmkit:{spec}", root=server.url, pid=server.pid))
    return out


def _run_live(runner: BenchRunner, quiet: bool) -> Any:
    """Run with a live display; Ctrl-C (or SIGTERM) stops it and keeps what was measured."""
    async def main() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            return await runner.run(stop)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("{task.fields[rate]}"))
    with Progress(*columns, console=err_console, disable=quiet) as progress:
        runner.progress = RichProgress(progress)
        return asyncio.run(main())


def _emit(doc: dict[str, Any], output_dir: Path | None, name: str, no_plots: bool, as_json: bool) -> None:
    table = markdown_table(doc)
    if output_dir is not None:
        write_atomic(output_dir / f"{name}.json", json.dumps(doc, indent=2))
        write_atomic(output_dir / f"{name}.md", table + "\n")
        if not no_plots and doc["runs"]:
            from slmkit.bench.plots import write_bench_plots

            try:
                write_bench_plots(doc, output_dir, name)
            except InvalidRequest as exc:  # matplotlib is an extra; the results are written already
                err_console.print(f"note: {escape(exc.message)}")
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    elif doc["runs"]:  # nothing measured (an unreachable server): the error line says why, no empty table
        console.print(table, highlight=False, soft_wrap=True)


@bench.command("compare")
@click.argument("a", type=click.Path(path_type=Path))
@click.argument("b", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the ratios as JSON.")
@click.option("--fail-below", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Regression gate: exit 1 when B performs worse than this fraction of A (e.g. 0.7).")
@click.option("--metric", "metrics", type=click.Choice([key for _, key, _, _ in COLUMNS]), multiple=True,
              help="Figure the gate checks; repeatable [output_tokens_per_s].")
@click.option("--force", is_flag=True, help="Compare runs of different workloads anyway.")
@handle_errors
def compare(a: Path, b: Path, as_json: bool, fail_below: float | None, metrics: tuple[str, ...],
            force: bool) -> None:
    """Ratios B/A of every figure of two `slm bench` results, matched by sweep level.

    With --fail-below R it is a regression gate for CI (A the baseline, B the new run): it exits
    1 when, at any level, a checked figure of B is worse than R times A's (throughput below R
    times, or a latency above 1/R times)."""
    if metrics and fail_below is None:
        raise InvalidRequest("--metric goes with --fail-below")
    first, second = load_document(a), load_document(b)
    workloads = [_workload_of(d) for d in (first, second)]
    if workloads[0] != workloads[1] and not force:
        raise InvalidRequest(f"{a} and {b} ran different workloads ({workloads[0][0]} vs {workloads[1][0]}); "
                             "their figures do not compare (--force compares them anyway)")
    rows = compare_rows(first, second)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        console.print(compare_markdown(rows), highlight=False, soft_wrap=True)
    if fail_below is not None:
        found = regressions(rows, fail_below, list(metrics) or ["output_tokens_per_s"])
        if found:
            fail(regression_message(found, fail_below))
        err_console.print(f"no regression below {fail_below:g} of the baseline")


def _workload_of(doc: dict[str, Any]) -> tuple[str, str]:
    """A result's workload: its name and its detail (prompt lengths, caps...)."""
    config = doc.get("config") or {}
    detail = {k: v for k, v in (config.get("workload_detail") or {}).items() if v is not None}  # unset = default
    return str(config.get("workload", doc.get("kind", "?"))), json.dumps(detail, sort_keys=True)
