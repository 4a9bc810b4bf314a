"""slmkit against its peers under load: a thin caller of `slm bench`.

Usage (the full sweep the docs report; about 30 minutes on a 2-core machine):

    .venv/bin/python benchmarks/serving.py --repeats 3 [--llama-server /path/to/llama-server]

Starts, on the same GGUF (default: the embedded SmolLM2-135M-Instruct Q4_1), the same threads
and the same context per sequence:
  - slmkit            `slm serve` with --parallel SLOTS
  - llama-cpp-python  `python -m llama_cpp.server` (default settings: interrupt_requests=True)
  - llama-cpp-python (no interrupt)  the same with `--interrupt_requests False`
  - llama-server      llama.cpp's own server with -np SLOTS, when --llama-server PATH is given
then runs ONE `slm bench` over all of them (interleaved, so machine drift hits all alike):
fixed-length streamed requests of --tokens output tokens at concurrency 1,4,8,16, medians of
--repeats, peak RSS per server. Writes the table into docs/benchmarks.md (the section between
the serving markers, replaced on each run; the rest of the file is kept) and a PNG plot.
Needs the bench extra: pip install -e '.[bench]'.

The grounded workload (answers copied, quoted or rewritten from a 300-600-token document, where
prompt-lookup speculation can pay), against llama-server at each of its n-gram speculation
settings (the fastest per level counts), greedy, written to its own section:

    .venv/bin/python benchmarks/serving.py --workload grounded --concurrency 1,8 --repeats 3 \
        --only slmkit --only llama-server --llama-server PATH --spec-types off,ngram-simple,ngram-mod
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from slmkit.bench.report import markdown_table, replace_section  # noqa: E402
from slmkit.server.process import free_port  # noqa: E402
from slmkit.store.resolve import resolve_model  # noqa: E402

BEGIN, END = "<!-- serving:begin -->", "<!-- serving:end -->"
SECTIONS = {"fixed": (BEGIN, END), "grounded": ("<!-- serving-grounded:begin -->", "<!-- serving-grounded:end -->")}


@contextmanager
def server(cmd: list[str], probe: str, log: Path) -> Iterator[tuple[str, int]]:
    """Start a server command with {port} filled in; yield (url, pid) once ``probe`` answers 200."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen([c.replace("{port}", str(port)) for c in cmd], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{cmd[0]} exited with {proc.returncode}; see {log}")
            try:
                if httpx.get(url + probe, timeout=2, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{cmd[0]} did not come up; see {log}")
            time.sleep(0.5)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def peers(args: argparse.Namespace, gguf: Path) -> list[tuple[str, list[str], str]]:
    """(label, command, readiness probe) of every server in the comparison."""
    t, c, slots = str(args.threads), str(args.ctx_size), str(args.slots)
    py = sys.executable
    lcp = [py, "-m", "llama_cpp.server", "--model", str(gguf), "--n_threads", t, "--n_threads_batch", t,
           "--n_ctx", c, "--host", "127.0.0.1", "--port", "{port}"]
    out = [("slmkit", [py, "-m", "slmkit", "serve", "--model", str(gguf), "--port", "{port}", "--threads", t,
                       "--ctx-size", c, "--parallel", slots, "--speculative", "ngram"], "/health"),
           ("llama-cpp-python", lcp, "/v1/models"),
           ("llama-cpp-python (no interrupt)", [*lcp, "--interrupt_requests", "False"], "/v1/models")]
    if args.slmkit_spec_off:
        out.append(("slmkit (speculation off)", [*out[0][1][:-1], "off"], "/health"))
    if args.llama_server:
        base = [str(args.llama_server), "-m", str(gguf), "-t", t, "-c", str(args.ctx_size * args.slots), "-np", slots,
                "--host", "127.0.0.1", "--port", "{port}"]
        for spec in args.spec_types.split(","):
            label = "llama-server" if spec == "off" else f"llama-server {spec}"
            out.append((label, base if spec == "off" else [*base, "--spec-type", spec], "/health"))
    variant = ("slmkit ", "llama-server ")  # `--only llama-server` takes each of its settings
    return [p for p in out if not args.only or p[0] in args.only
            or (p[0].startswith(variant) and p[0].split(" ")[0] in args.only)]


def bench_command(args: argparse.Namespace, targets: list[tuple[str, str, int]], out_dir: Path) -> list[str]:
    cmd = [sys.executable, "-m", "slmkit", "bench"]
    cmd += [f"{label}={url}" for label, url, _ in targets]
    for _, _, pid in targets:
        cmd += ["--pid", str(pid)]
    if args.workload == "grounded":  # greedy: the outputs of every server are the model's one answer
        cmd += ["--workload", "grounded", "--temperature", "0"]
        if args.grounded_max_tokens:  # a short smoke run: answers cut at this many tokens
            cmd += ["--max-tokens", str(args.grounded_max_tokens)]
    else:
        cmd += ["--workload", "fixed", "--prompt-tokens", str(args.prompt_tokens), "--max-tokens", str(args.tokens),
                "--temperature", "0.7"]
    cmd += ["--concurrency", args.concurrency, "--repeats", str(args.repeats), "--warmup", "1",
            "--timeout", "900", "-o", str(out_dir), "--name", f"serving-{args.workload}"]
    if args.requests:
        cmd += ["--requests", str(args.requests)]
    return cmd


def section(doc: dict[str, Any], command: str, args: argparse.Namespace, gguf: Path, plot: Path | None) -> str:
    begin, end = SECTIONS[args.workload]
    if args.workload == "grounded":
        return grounded_section(doc, command, args, gguf, plot)
    lines = [begin, "## slmkit vs llama-cpp-python's server (and llama-server) under load", "",
             f"Command: `{command}`", "",
             f"Each server has the same GGUF ({gguf.name}), {args.threads} threads and "
             f"{args.ctx_size} tokens of context per sequence (slmkit and llama-server: {args.slots} slots). "
             f"Requests stream {args.tokens} output tokens (fixed workload, `ignore_eos` sent; "
             "'completed/requested tokens' shows who honoured it), concurrency "
             f"{args.concurrency}, median of {args.repeats} repeats, servers measured alternately in one run. "
             f"Measured {doc['started_at']}.", "", markdown_table(doc), ""]
    lines += [ratio_table(doc), ""]
    if plot:
        lines += [f"![tokens/s and TTFT p95 vs concurrency]({plot.relative_to(ROOT / 'docs')})", ""]
    lines.append(end)
    return "\n".join(lines)


def grounded_section(doc: dict[str, Any], command: str, args: argparse.Namespace, gguf: Path,
                     plot: Path | None) -> str:
    begin, end = SECTIONS["grounded"]
    lines = [begin, "## Grounded workload: slmkit vs llama-server at its best speculation setting", "",
             f"Command: `{command}`", "",
             f"Each server has the same GGUF ({gguf.name}), {args.threads} threads, {args.slots} slots of "
             f"{args.ctx_size} tokens. Every request gets a document of its own (300-600 tokens) and a task that "
             "copies, quotes or rewrites from it (answers of 128-256 tokens, ending where the model ends them), "
             f"greedy; concurrency {args.concurrency}, median of {args.repeats} repeats, servers measured "
             f"alternately in one run, each run's prompts salted apart. Measured {doc['started_at']}.", "",
             markdown_table(doc), "", best_ratio_table(doc), ""]
    if plot:
        lines += [f"![tokens/s and TTFT p95 vs concurrency]({plot.relative_to(ROOT / 'docs')})", ""]
    lines.append(end)
    return "\n".join(lines)


def best_ratio_table(doc: dict[str, Any]) -> str:
    """slmkit against the fastest llama-server setting at each level (the grounded targets)."""
    rows = {(r["endpoint"], r["level"]): r for r in doc["summary"]}
    levels = sorted({r["level"] for r in doc["summary"]})
    peers = [e["label"] for e in doc["endpoints"] if e["label"].startswith("llama-server")]
    lines = ["| concurrency | slmkit tok/s | best llama-server setting | its tok/s | tok/s ratio | TTFT p95 ratio |",
             "|---|---|---|---|---|---|"]
    for level in levels:
        ours = rows.get(("slmkit", level)) or {}
        found = [(rows[(p, level)]["output_tokens_per_s"] or 0.0, p) for p in peers if (p, level) in rows]
        if not found or not ours.get("output_tokens_per_s"):
            continue
        speed, best = max(found)
        theirs = rows[(best, level)]
        ttft = (f"{ours['ttft_p95_ms'] / theirs['ttft_p95_ms']:.2f}x"
                if ours.get("ttft_p95_ms") and theirs.get("ttft_p95_ms") else "-")
        lines.append(f"| {level} | {ours['output_tokens_per_s']:.1f} | {best} | {speed:.1f} | "
                     f"{ours['output_tokens_per_s'] / speed:.2f}x | {ttft} |")
    return "slmkit relative to the fastest llama-server setting at each level (TTFT p95: lower is better):\n\n" + \
        "\n".join(lines)


def ratio_table(doc: dict[str, Any]) -> str:
    """slmkit's tok/s and TTFT p95 against each peer's, level by level (the issue's targets)."""
    rows = {(r["endpoint"], r["level"]): r for r in doc["summary"]}
    levels = sorted({r["level"] for r in doc["summary"]})
    others = [e["label"] for e in doc["endpoints"] if e["label"] != "slmkit"]
    lines = ["| concurrency | " + " | ".join(f"tok/s vs {o} | TTFT p95 vs {o}" for o in others) + " |",
             "|---|" + "---|---|" * len(others)]
    for level in levels:
        ours = rows.get(("slmkit", level))
        cells = []
        for other in others:
            theirs = rows.get((other, level))
            for key in ("output_tokens_per_s", "ttft_p95_ms"):
                mine, peer = (ours or {}).get(key), (theirs or {}).get(key)
                cells.append(f"{mine / peer:.2f}x" if mine and peer else "-")
        lines.append(f"| {level} | " + " | ".join(cells) + " |")
    return "slmkit relative to each peer (tok/s: higher is better; TTFT p95: lower is better):\n\n" + "\n".join(lines)


def write_section(text: str, docs: Path, workload: str = "fixed") -> None:
    replace_section(docs, *SECTIONS[workload], text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="embedded model name or GGUF path")
    parser.add_argument("--llama-server", type=Path, default=None, help="path to llama.cpp's llama-server")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ctx-size", type=int, default=1024, help="context per sequence")
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--concurrency", default="1,4,8,16")
    parser.add_argument("--tokens", type=int, default=128, help="output tokens per request")
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--requests", type=int, default=None, help="per run [slm bench default: 4x concurrency]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workload", choices=sorted(SECTIONS), default="fixed")
    parser.add_argument("--spec-types", default="off",
                        help="llama-server variants: off and/or its --spec-type values, comma-separated "
                             "(e.g. off,ngram-simple,ngram-map-k,ngram-mod)")
    parser.add_argument("--grounded-max-tokens", type=int, default=None,
                        help="grounded workload: cap the answers (a smoke run; the figures need the full answers)")
    parser.add_argument("--slmkit-spec-off", action="store_true", help="also slmkit with --speculative off")
    parser.add_argument("--only", action="append", help="bench only this server label (repeatable)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--no-write", action="store_true", help="do not touch docs/benchmarks.md")
    args = parser.parse_args()
    gguf = resolve_model(args.model).path
    args.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        targets = []
        for label, cmd, probe in peers(args, gguf):
            print(f"starting {label} ...", flush=True)
            log = args.out / (re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") + ".log")
            url, pid = stack.enter_context(server(cmd, probe, log))
            targets.append((label, url, pid))
        cmd = bench_command(args, targets, args.out)
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=False)
    doc = json.loads((args.out / f"serving-{args.workload}.json").read_text())
    print(markdown_table(doc))
    if args.no_write:
        return
    suffix = "" if args.workload == "fixed" else f"_{args.workload}"
    plot = ROOT / "docs" / "img" / f"serving{suffix}_throughput_ttft.png"
    plot.parent.mkdir(exist_ok=True)
    src = args.out / f"serving-{args.workload}_throughput_ttft.png"
    if src.exists():
        os.replace(src, plot)
    invocation = "python benchmarks/serving.py " + " ".join(sys.argv[1:])
    write_section(section(doc, invocation.strip(), args, gguf, plot if plot.exists() else None),
                  ROOT / "docs" / "benchmarks.md", args.workload)


if __name__ == "__main__":
    main()
