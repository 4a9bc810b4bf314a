"""Check `slm recommend`'s decode-speed estimate against `slm bench --engine` on the embedded model.

Usage: .venv/bin/python benchmarks/speed_estimate.py [--threads 1,2] [--rounds 3]

Each round measures the memory bandwidth (as `slm recommend` does) and then the engine's batch-1
generation speed, back to back, so both see the same machine; the medians are compared. Prints a
Markdown table for docs/models.md and the fitted EFFICIENCY (what would make the median error 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from slmkit.catalog.estimate import Dims
from slmkit.catalog.hardware import load_average, probe
from slmkit.catalog.speed import EFFICIENCY, bytes_per_token, decode_speed, measure_bandwidth
from slmkit.store.embedded import EMBEDDED
from slmkit.store.gguf_meta import read_gguf

MODEL = "smollm2-135m-instruct"
PROMPT, GEN = 128, 64


def bench_tg(threads: int) -> float:
    done = subprocess.run([sys.executable, "-m", "slmkit", "bench", "--engine", "llamacpp", "--model", MODEL,
                           "--batch-sizes", "1", "--threads", str(threads), "--gen-tokens", str(GEN),
                           "--prompt-tokens", str(PROMPT), "--json"], capture_output=True, text=True, check=True)
    return float(json.loads(done.stdout)["results"][0]["tg_tokens_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    info = read_gguf(EMBEDDED[MODEL].path())
    per_token = bytes_per_token(info.tensor_bytes, Dims.from_gguf(info), PROMPT + GEN // 2)
    features = probe().cpu_features
    print("| threads | bandwidth GB/s | estimate tok/s | `slm bench --engine` tg tok/s | error | load |")
    print("|---|---|---|---|---|---|")
    fitted = []
    for threads in (int(t) for t in args.threads.split(",")):
        bandwidths, measured = [], []
        for _ in range(args.rounds):
            bandwidths.append(measure_bandwidth(threads))
            measured.append(bench_tg(threads))
        bandwidth, tg = statistics.median(bandwidths), statistics.median(measured)
        estimate = decode_speed(per_token, bandwidth, features)
        fitted.append(EFFICIENCY * tg / estimate)
        print(f"| {threads} | {bandwidth / 1e9:.1f} | {estimate:.0f} | {tg:.0f} | {(estimate - tg) / tg:+.0%} | "
              f"{load_average():.1f} |")
    print(f"\nbytes per token {per_token / 2**20:.1f} MiB; EFFICIENCY {EFFICIENCY} (fitted here: "
          f"{statistics.median(fitted):.2f})")


if __name__ == "__main__":
    main()
