"""Where a decode step's time goes in slmkit's llama.cpp engine: `llama_decode` vs the rest.

Usage (in process, no HTTP; about a minute on a 2-core machine, needs a quiet one):

    PYTHONPATH=src python benchmarks/step_time.py --streams 8 --tokens 128 --repeats 3

Runs N concurrent streams of exactly --tokens tokens (`ignore_eos`) through `slmkit.load`, timing
every scheduler step, the `llama_decode` inside it and the sampler calls (llama.cpp's C sampling
chain, which llama-server pays too). "rest" is the step minus its decode: sampling, detokenizing,
stop matching and handing the step's events to the asyncio loop (`Outbox.flush`), in Python.
Reports medians over the steps that decode one token for every stream, per repeat.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
import slmkit
from slmkit.engine.admission import Outbox
from slmkit.engine.llamacpp.bindings import Context
from slmkit.engine.llamacpp.sampler import Sampler
from slmkit.engine.llamacpp.scheduler import Scheduler


class StepTimer:
    """Wraps the scheduler's step, the context's decode and the sampler (restored by ``close``)."""

    def __init__(self) -> None:
        self.steps: list[tuple[float, int, float, float]] = []  # (step s, decode tokens, decode s, sampling s)
        self._decode: tuple[int, float] = (0, 0.0)
        self._sampling = 0.0
        self._originals = (Scheduler._step, Context.decode, Sampler.sample, Outbox.flush)
        step, decode, sample, flush = self._originals
        timer = self

        def timed_step(sched: Scheduler) -> None:
            timer._decode, timer._sampling = (0, 0.0), 0.0
            start = time.perf_counter()
            step(sched)
            if timer._decode[0]:
                timer.steps.append((time.perf_counter() - start, *timer._decode, timer._sampling))

        def timed_decode(ctx: Context, batch: Any) -> int:
            start = time.perf_counter()
            rc = int(decode(ctx, batch))
            timer._decode = (batch.n, time.perf_counter() - start)
            return rc

        def timed_sample(sampler: Sampler, ctx: Context, index: int) -> int:
            start = time.perf_counter()
            token = int(sample(sampler, ctx, index))
            timer._sampling += time.perf_counter() - start
            return token

        def timed_flush(outbox: Outbox) -> None:  # the step's events handed over: part of its time
            start = time.perf_counter()
            flush(outbox)
            if timer.steps:
                last = timer.steps[-1]
                timer.steps[-1] = (last[0] + time.perf_counter() - start, *last[1:])

        Scheduler._step, Context.decode, Sampler.sample = timed_step, timed_decode, timed_sample
        Outbox.flush = timed_flush

    def close(self) -> None:
        Scheduler._step, Context.decode, Sampler.sample, Outbox.flush = self._originals


async def run_streams(model: slmkit.Model, streams: int, tokens: int, temperature: float) -> None:
    async def one(i: int) -> None:
        async for _ in model.astream(f"Request {i}: write a long story about a dragon called number {i}.",
                                     max_tokens=tokens, ignore_eos=True, temperature=temperature, seed=i):
            pass

    await asyncio.gather(*(one(i) for i in range(streams)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    timer = StepTimer()
    try:
        with slmkit.load(args.model, parallel=args.streams, ctx_size=1024, threads=args.threads) as model:
            asyncio.run(run_streams(model, args.streams, 16, args.temperature))  # warm-up
            print("| repeat | steps | decode p50 ms | step p50 ms | rest p50 ms | of which sampling p50 ms "
                  "| rest / step |")
            print("|---|---|---|---|---|---|---|")
            for repeat in range(1, args.repeats + 1):
                timer.steps.clear()
                asyncio.run(run_streams(model, args.streams, args.tokens, args.temperature))
                full = [s for s in timer.steps if s[1] == args.streams]
                step = statistics.median(s[0] for s in full)
                rest = statistics.median(s[0] - s[2] for s in full)
                decode = statistics.median(s[2] for s in full)
                sampling = statistics.median(s[3] for s in full)
                print(f"| {repeat} | {len(full)} | {decode * 1e3:.1f} | {step * 1e3:.1f} | {rest * 1e3:.2f} | "
                      f"{sampling * 1e3:.2f} | {rest / step:.1%} |")
    finally:
        timer.close()


if __name__ == "__main__":
    main()
