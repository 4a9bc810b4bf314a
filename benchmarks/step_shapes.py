"""What one `llama_decode` costs by the shape of its batch: one sequence with k tokens against k
sequences with one token each, and a draft beside other sequences' tokens.

Usage (in process, no HTTP; about a minute on a 2-core machine, needs a quiet one):

    PYTHONPATH=src python benchmarks/step_shapes.py --context 200 --repeats 7

Fills 8 sequences of a context with one KV stream per slot (as the engine runs) with --context
tokens each, then times decode steps of each shape (medians of --repeats, the new cells removed
after each). This is the cost basis of the speculation cost model (engine/llamacpp/speculative.py):
a step costs ``a + b * tokens``, and a draft beside other sequences runs as a graph evaluation of its
own (llama.cpp splits a batch into micro-batches of consecutive sequences with equal token counts),
paying ``a`` again.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
from slmkit.engine.llamacpp.bindings import Batch, Context, Model, init_backend
from slmkit.store.resolve import resolve_model

SEQS = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--context", type=int, default=200, help="tokens already cached in each sequence")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    init_backend()
    model = Model(resolve_model(args.model).path)
    ctx = Context(model, n_seq=SEQS, ctx_per_seq=args.context + 64, n_batch=512, threads=args.threads)
    batch = Batch(512)
    n = args.context
    for seq in range(SEQS):
        batch.clear()
        for i in range(n):
            batch.add(100 + (i * 7 + seq) % 1000, i, seq, False)
        if ctx.decode(batch) != 0:
            sys.exit("llama_decode failed while filling the context")

    def timed(fill: Callable[[], None]) -> float:
        times = []
        for _ in range(args.repeats):
            batch.clear()
            fill()
            start = time.perf_counter()
            if ctx.decode(batch) != 0:
                sys.exit("llama_decode failed")
            times.append(time.perf_counter() - start)
            for seq in range(SEQS):
                ctx.seq_rm(seq, n, -1)
        return statistics.median(times) * 1e3

    def one_seq(k: int) -> Callable[[], None]:
        def fill() -> None:
            for j in range(k):
                batch.add(5 + j, n + j, 0, True)
        return fill

    def many_seqs(k: int, tokens: int = 1) -> Callable[[], None]:
        def fill() -> None:
            for j in range(tokens):
                for s in range(k):
                    batch.add(5 + j, n + j, s, True)
        return fill

    def with_draft() -> None:
        for s in range(SEQS):
            batch.add(5, n, s, True)
        for j in range(4):
            batch.add(6 + j, n + 1 + j, 3, True)

    rows = [(f"1 sequence x {k} token{'s' * (k > 1)}", timed(one_seq(k)),
             f"{k} sequence{'s' * (k > 1)} x 1 token", timed(many_seqs(k))) for k in (1, 2, 4, 8)]
    rows.append(("1 sequence x 16 tokens", timed(one_seq(16)), "8 sequences x 2 tokens", timed(many_seqs(SEQS, 2))))
    print(f"SmolLM2-135M-Instruct Q4_1 ({args.model}), {args.threads} threads, {n} tokens cached per sequence, "
          f"median of {args.repeats} (ms):\n")
    print("| shape | ms | shape | ms |\n|---|---|---|---|")
    for left, lms, right, rms in rows:
        print(f"| {left} | {lms:.1f} | {right} | {rms:.1f} |")
    print(f"\n8 sequences x 1 token, plus a 4-token draft on sequence 3: {timed(with_draft):.1f} ms "
          f"(8 x 1 alone {timed(many_seqs(SEQS)):.1f}, 1 x 4 alone {timed(one_seq(4)):.1f})")
    batch.close()
    ctx.close()
    model.close()


if __name__ == "__main__":
    main()
