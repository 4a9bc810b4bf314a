"""Aggregate generated tokens/s at 1 and 8 concurrent streams against `slm serve`.

Usage: .venv/bin/python benchmarks/throughput.py [--repeats 3] [--tokens 128] [--write docs/benchmarks.md]

Starts the server with the embedded model (8 slots, 2 threads), streams chat completions
with `max_tokens` fixed and `ignore_eos`-like prompts that make the model talk, counts the
generated tokens from `usage`, and reports medians of the repeats, 1 and 8 streams measured
alternately in one run so machine noise hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import ServerProcess

MODEL = "smollm2-135m-instruct"
TOPICS = ["the sea", "a robot", "green tea", "mountains", "a violin", "the moon", "bread", "winter",
          "a library", "rain", "a bicycle", "volcanoes", "chess", "a garden", "the desert", "trains"]


async def one_stream(client: openai.AsyncOpenAI, topic: str, tokens: int) -> tuple[int, float]:
    start = time.perf_counter()
    first = 0.0
    stream = await client.chat.completions.create(
        model=MODEL, temperature=0.7, seed=hash(topic) & 0xFFFF, max_tokens=tokens, stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": f"Write a very long, detailed essay about {topic}."}])
    generated = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and not first:
            first = time.perf_counter() - start
        if chunk.usage:
            generated = chunk.usage.completion_tokens
    return generated, first


async def run_level(client: openai.AsyncOpenAI, streams: int, tokens: int, offset: int) -> dict[str, float]:
    start = time.perf_counter()
    topics = [TOPICS[(offset + i) % len(TOPICS)] for i in range(streams)]
    results = await asyncio.gather(*(one_stream(client, t, tokens) for t in topics))
    wall = time.perf_counter() - start
    generated = sum(r[0] for r in results)
    return {"tokens": generated, "wall_s": wall, "tok_s": generated / wall,
            "ttft_max_s": max(r[1] for r in results)}


async def bench(url: str, levels: list[int], tokens: int, repeats: int) -> dict[int, list[dict[str, float]]]:
    client = openai.AsyncOpenAI(base_url=url, api_key="x", max_retries=0, timeout=600)
    await run_level(client, 1, 16, 0)  # warm-up
    out: dict[int, list[dict[str, float]]] = {n: [] for n in levels}
    for r in range(repeats):
        for n in levels:
            out[n].append(await run_level(client, n, tokens, r))
            print(f"repeat {r + 1}: {n} streams -> {out[n][-1]['tok_s']:.1f} tok/s", flush=True)
    return out


def table(results: dict[int, list[dict[str, float]]], base: int) -> str:
    med = {n: statistics.median(x["tok_s"] for x in runs) for n, runs in results.items()}
    lines = ["| concurrent streams | aggregate tok/s (median) | runs (tok/s) | ratio vs 1 stream |",
             "|---|---|---|---|"]
    for n, runs in results.items():
        values = ", ".join(f"{x['tok_s']:.1f}" for x in runs)
        lines.append(f"| {n} | {med[n]:.1f} | {values} | {med[n] / med[base]:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--levels", default="1,8")
    parser.add_argument("--threads", default="2")
    parser.add_argument("--json", type=Path, default=None, help="write raw results here")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    server = ServerProcess("--parallel", str(max(levels)), "--ctx-size", "1024", "--threads", args.threads)
    try:
        results = asyncio.run(bench(server.base_url, levels, args.tokens, args.repeats))
    finally:
        server.close()
    print(table(results, levels[0]))
    if args.json:
        args.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=2))


if __name__ == "__main__":
    main()
