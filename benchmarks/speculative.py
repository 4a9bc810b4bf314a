"""Prompt-lookup speculation in process: identical greedy output, and what it buys per workload.

    .venv/bin/python benchmarks/speculative.py --items 24 --threads 2
    .venv/bin/python benchmarks/speculative.py --items 32 --streams 8 --workloads grounded

Two llama.cpp engines on the same GGUF (speculation on and off) decode the same requests,
alternately: every item of the grounded workload (and of the fixed one, whose drafts are
rejected), greedy; one at a time, or at --streams concurrent requests in rounds of 4 per
stream (a closed loop that keeps --streams in flight; the engines take turns round by round).
Prints how many outputs are identical token for token, the drafted and accepted tokens, and the
median tokens/s of each engine (per request at one stream, aggregate per round at several), with
the machine's load average, since a shared machine moves every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from slmkit.bench.grounded import grounded_workload  # noqa: E402
from slmkit.bench.workload import BenchPrompt, Workload, fixed_workload, salted  # noqa: E402
from slmkit.engine.base import GenerationRequest, SamplingParams  # noqa: E402
from slmkit.engine.llamacpp.engine import LlamaCppEngine  # noqa: E402
from slmkit.settings import EngineSettings  # noqa: E402
from slmkit.store.resolve import resolve_model  # noqa: E402


async def generate(engine: LlamaCppEngine, messages: list[dict[str, str]], max_tokens: int,
                   ignore_eos: bool) -> tuple[list[int], float]:
    prompt = engine.chat_tokens(engine.render_chat(messages))
    request = GenerationRequest(prompt=prompt, sampling=SamplingParams(temperature=0, ignore_eos=ignore_eos),
                                max_tokens=max_tokens)
    tokens: list[int] = []
    first = 0.0
    async for event in engine.generate(request):
        if event.token_ids and not first:
            first = time.perf_counter()
        tokens += event.token_ids
    return tokens, (len(tokens) - 1) / max(time.perf_counter() - first, 1e-9)


async def generate_round(engine: LlamaCppEngine, prompts: list[BenchPrompt], ignore_eos: bool,
                         streams: int) -> tuple[list[list[int]], float]:
    """The prompts through ``streams`` workers (a closed loop: each takes the next prompt as soon
    as its last one ends, so ``streams`` requests stay in flight until the queue runs dry): their
    tokens, and the round's aggregate tokens/s."""
    tokens: list[list[int]] = [[] for _ in prompts]
    todo = iter(range(len(prompts)))

    async def worker() -> None:
        for i in todo:
            tokens[i] = (await generate(engine, prompts[i].messages, prompts[i].max_tokens, ignore_eos))[0]

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(streams)))
    return tokens, sum(map(len, tokens)) / (time.perf_counter() - start)


async def compare(engines: dict[str, LlamaCppEngine], work: Workload, items: int, salt: str,
                  streams: int = 1) -> dict[str, object]:
    speeds: dict[str, list[float]] = {mode: [] for mode in engines}
    mismatches: list[int] = []
    before = engines["ngram"].stats()
    size = 1 if streams == 1 else 4 * streams  # a round at several streams: 4 requests per stream
    for first in range(0, items, size):
        prompts = [salted(work.item(i), f"{salt}.{i}") for i in range(first, min(first + size, items))]
        outputs: dict[str, list[list[int]]] = {}
        for mode in (("ngram", "off") if first // size % 2 == 0 else ("off", "ngram")):
            if streams == 1:
                tokens, speed = await generate(engines[mode], prompts[0].messages, prompts[0].max_tokens,
                                               work.ignore_eos)
                outputs[mode] = [tokens]
            else:
                outputs[mode], speed = await generate_round(engines[mode], prompts, work.ignore_eos, streams)
            speeds[mode].append(speed)
        mismatches += [first + j for j, (a, b) in enumerate(zip(outputs["ngram"], outputs["off"], strict=True))
                       if a != b]
    after = engines["ngram"].stats()
    drafted = after["spec_draft_tokens_total"] - before["spec_draft_tokens_total"]
    accepted = after["spec_accepted_tokens_total"] - before["spec_accepted_tokens_total"]
    on, off = statistics.median(speeds["ngram"]), statistics.median(speeds["off"])
    return {"workload": work.name, "items": items, "streams": streams, "identical": items - len(mismatches),
            "mismatches": mismatches,
            "drafted": int(drafted), "accepted": int(accepted), "tok_s_on": on, "tok_s_off": off, "ratio": on / off}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--items", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workloads", default="grounded,fixed")
    parser.add_argument("--streams", type=int, default=1, help="concurrent requests per round")
    args = parser.parse_args()
    path = resolve_model(args.model).path
    engines = {mode: LlamaCppEngine(mode, path, EngineSettings(parallel=args.streams, ctx_size=2048,
                                                               threads=args.threads, speculative=mode,
                                                               prompt_cache_mib=0))
               for mode in ("ngram", "off")}
    salt = os.urandom(3).hex()
    print(f"load average before: {os.getloadavg()}", flush=True)
    try:
        for name in args.workloads.split(","):
            work = grounded_workload() if name == "grounded" else fixed_workload(64, 128)
            print(await compare(engines, work, args.items, salt, args.streams), flush=True)
    finally:
        for engine in engines.values():
            engine.close()
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    asyncio.run(main())
