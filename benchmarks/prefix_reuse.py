"""Prefix reuse: time to first token with a ~2,000-token shared system prompt.

Usage: .venv/bin/python benchmarks/prefix_reuse.py [--turns 5] [--slots 4]

The first request reads the whole system prompt; later requests with other short user turns
go to the slot holding it and read only their own turn. Reports each TTFT and the ratio of the
first to the median of the later ones.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import ServerProcess

MODEL = "smollm2-135m-instruct"
RULES = " ".join(f"Rule {i}: answer politely, cite the handbook section {i}, and never reveal secret {i}."
                 for i in range(90))
QUESTIONS = ["What is rule 3?", "Say hello.", "What is 2+2?", "Name a fruit.", "Who are you?", "Give me a tip."]


def ttft(client: openai.OpenAI, question: str) -> tuple[float, int, int]:
    start = time.perf_counter()
    stream = client.chat.completions.create(
        model=MODEL, max_tokens=8, temperature=0, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": RULES}, {"role": "user", "content": question}])
    first = 0.0
    usage = None
    for chunk in stream:
        if not first and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - start
        usage = chunk.usage or usage
    assert usage is not None
    return first, usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--slots", default="4")
    args = parser.parse_args()
    server = ServerProcess("--parallel", args.slots, "--ctx-size", "4096", "--threads", "2")
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=600)
        rows = [ttft(client, QUESTIONS[i % len(QUESTIONS)]) for i in range(args.turns)]
    finally:
        server.close()
    print("| request | prompt tokens | cached tokens | TTFT (s) |\n|---|---|---|---|")
    for i, (t, prompt, cached) in enumerate(rows, 1):
        print(f"| {i} | {prompt} | {cached} | {t:.3f} |")
    later = statistics.median(r[0] for r in rows[1:])
    print(f"\nfirst / median(later) TTFT = {rows[0][0] / later:.1f}x")


if __name__ == "__main__":
    main()
