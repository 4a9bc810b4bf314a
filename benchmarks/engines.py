"""llama.cpp vs ONNX Runtime GenAI on the same model: a thin caller of `slm bench` and `slm eval`.

Usage (the full run the docs report; about 20-30 minutes on a 2-core machine, needs a quiet one):

    .venv/bin/python benchmarks/engines.py --repeats 3

For the model (default: the embedded SmolLM2-135M-Instruct Q4_1 GGUF) and its ONNX conversions
(`MODEL:onnx-int4` and `MODEL:onnx-int8`, converted first with `slm convert` when missing):
  1. ONE `slm bench` spawning one `slm serve` per engine (same threads, slots and context per
     sequence), interleaved so that machine drift hits all alike: fixed-length streamed requests
     at concurrency 1,4,8, medians of --repeats, peak RSS of each server;
  2. `slm eval` on the shipped text: perplexity of each, and drift of the ONNX models from the GGUF.
Writes the engine table into docs/benchmarks.md (the section between the engines markers,
replaced on each run; the rest of the file is kept) unless --no-write.
Needs the bench and convert extras: pip install -e '.[test,convert]'.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from slmkit.bench.report import markdown_table, replace_section  # noqa: E402
from slmkit.errors import SlmkitError  # noqa: E402
from slmkit.store.resolve import resolve_model  # noqa: E402

BEGIN, END = "<!-- engines:begin -->", "<!-- engines:end -->"
SLM = [sys.executable, "-m", "slmkit"]


def ensure_onnx(model: str, precision: str, threads: int) -> str:
    """The store name of the model's ONNX conversion, converting it first when it is missing."""
    name = f"{model}:onnx-{precision}"
    try:
        resolve_model(name)
        return name
    except SlmkitError:
        pass
    print(f"converting {model} to ONNX {precision} (about 1-2 minutes) ...", flush=True)
    subprocess.run([*SLM, "convert", model, "--to", "onnx", "--precision", precision, "--name", name,
                    "--threads", str(threads)], check=True)
    return name


def bench_command(args: argparse.Namespace, models: list[str], out: Path) -> list[str]:
    cmd = [*SLM, "bench", "run"]
    for model in models:
        cmd += ["--spawn", model]
    cmd += ["--workload", "fixed", "--prompt-tokens", str(args.prompt_tokens), "--max-tokens", str(args.tokens),
            "--concurrency", args.concurrency, "--repeats", str(args.repeats), "--warmup", "1",
            "--threads", str(args.threads), "--parallel", str(args.slots), "--ctx-size", str(args.ctx_size),
            "--temperature", "0", "--timeout", "900", "-o", str(out), "--name", "engines", "--no-plots"]
    if args.requests:
        cmd += ["--requests", str(args.requests)]
    return cmd


def eval_command(args: argparse.Namespace, models: list[str], out: Path) -> list[str]:
    cmd = [*SLM, "eval", str(resolve_model(args.model).path), *models[1:], "--no-tasks", "--threads",
           str(args.threads), "--window", str(args.window), "-o", str(out), "--name", "engines-eval", "--no-plots"]
    if args.eval_tokens:
        cmd += ["--max-tokens", str(args.eval_tokens)]
    return cmd


def engine_table(bench: dict[str, Any], quality: dict[str, Any] | None, models: list[str]) -> str:
    """One row per engine: tok/s at each level, TTFT, peak RSS, perplexity."""
    rows = {(r["endpoint"], r["level"]): r for r in bench["summary"]}
    levels = sorted({r["level"] for r in bench["summary"]})
    ppl = {}
    for i, entry in enumerate((quality or {}).get("models", [])):
        if i < len(models):
            ppl[models[i]] = ((entry.get("perplexity") or {}).get("perplexity"),
                              (entry.get("drift") or {}).get("perplexity_ratio"))
    head = ["engine / weights", *(f"tok/s c={lv:g}" for lv in levels), f"TTFT p50 ms c={levels[0]:g}",
            f"TTFT p50 ms c={levels[-1]:g}", "peak RSS MiB", "perplexity", "ppl vs GGUF"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for model in models:
        label = f"slmkit:{model}"
        cells = [_engine_label(model)]
        cells += [_f((rows.get((label, lv)) or {}).get("output_tokens_per_s"), "{:.1f}") for lv in levels]
        cells += [_f((rows.get((label, lv)) or {}).get("ttft_p50_ms"), "{:.0f}") for lv in (levels[0], levels[-1])]
        rss = [(rows.get((label, lv)) or {}).get("peak_rss_mib") for lv in levels]
        cells.append(_f(max((r for r in rss if r), default=None), "{:.0f}"))
        value, ratio = ppl.get(model, (None, None))
        cells += [_f(value, "{:.3f}"), _f(ratio, "{:.3f}")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _engine_label(model: str) -> str:
    if resolve_model(model).format == "onnx":
        return f"ONNX Runtime GenAI (`{model}`)"
    return f"llama.cpp (`{model}`)"


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def section(bench: dict[str, Any], quality: dict[str, Any] | None, models: list[str], command: str,
            args: argparse.Namespace) -> str:
    lines = [BEGIN, "## llama.cpp vs ONNX Runtime GenAI on the same model (`benchmarks/engines.py`)", "",
             f"Command: `{command}`", "",
             f"Every engine serves the same model with {args.threads} threads, {args.slots} slots and "
             f"{args.ctx_size} tokens per sequence; requests stream {args.tokens} output tokens from "
             f"{args.prompt_tokens}-word prompts, greedy, at concurrency {args.concurrency}; medians of "
             f"{args.repeats} repeats, the servers measured alternately in one `slm bench` run. Perplexity: "
             f"`slm eval` on the shipped text (window {args.window}). Measured {bench['started_at']}.", "",
             engine_table(bench, quality, models), "", "Every figure `slm bench` measured:", "",
             markdown_table(bench), "", END]
    return "\n".join(lines)


def write_section(text: str, docs: Path) -> None:
    replace_section(docs, BEGIN, END, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="store or embedded GGUF model name")
    parser.add_argument("--precisions", default="int4,int8", help="ONNX conversions to compare")
    parser.add_argument("--onnx", default=None, help="store names of the ONNX models instead [MODEL:onnx-PRECISION]")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx-size", type=int, default=1024, help="context per sequence")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--tokens", type=int, default=128, help="output tokens per request")
    parser.add_argument("--prompt-tokens", type=int, default=64, help="prompt length in words")
    parser.add_argument("--requests", type=int, default=None, help="per run [slm bench default: 4x concurrency]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=int, default=512, help="perplexity window")
    parser.add_argument("--eval-tokens", type=int, default=None, help="score at most this many tokens [all]")
    parser.add_argument("--no-eval", action="store_true", help="skip perplexity")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.onnx:
        models = [args.model] + [m.strip() for m in args.onnx.split(",") if m.strip()]
    else:
        models = [args.model] + [ensure_onnx(args.model, p.strip(), args.threads)
                                 for p in args.precisions.split(",") if p.strip()]
    cmd = bench_command(args, models, args.out)
    print(" ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    bench = json.loads((args.out / "engines.json").read_text())
    quality = None
    if not args.no_eval:
        cmd = eval_command(args, models, args.out)
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        quality = json.loads((args.out / "engines-eval.json").read_text())
    print(engine_table(bench, quality, models))
    if args.no_write:
        return
    invocation = ("python benchmarks/engines.py " + " ".join(sys.argv[1:])).strip()
    write_section(section(bench, quality, models, invocation, args), ROOT / "docs" / "benchmarks.md")


if __name__ == "__main__":
    main()
