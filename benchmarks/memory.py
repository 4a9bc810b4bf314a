"""Resident memory of `slm serve` against model file + KV cache + 150 MB.

Usage: .venv/bin/python benchmarks/memory.py [--slots 8] [--ctx-size 2048]

Starts the server, sends one request per slot so every slot has been used, then reads the
server process's VmRSS and VmHWM from /proc. The KV cache size is computed from the GGUF's
dimensions: 2 (K and V) x layers x (slots x ctx) x KV heads x head dim x 2 bytes (f16).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import ServerProcess

from slmkit.engine.llamacpp.bindings import Model
from slmkit.store.resolve import resolve_model

MODEL = "smollm2-135m-instruct"
MB = 1024 * 1024


def proc_mem(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def kv_bytes(path: Path, cells: int) -> int:
    model = Model(path, vocab_only=True)
    arch = model.meta("general.architecture")
    layers = int(model.meta(f"{arch}.block_count") or 0)
    heads = int(model.meta(f"{arch}.attention.head_count") or 0)
    kv_heads = int(model.meta(f"{arch}.attention.head_count_kv") or heads)
    head_dim = int(model.meta(f"{arch}.embedding_length") or 0) // heads
    model.close()
    return 2 * layers * cells * kv_heads * head_dim * 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--ctx-size", type=int, default=2048)
    args = parser.parse_args()
    path = resolve_model(MODEL).path
    server = ServerProcess("--parallel", str(args.slots), "--ctx-size", str(args.ctx_size), "--threads", "2")
    try:
        client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=600)
        loaded = proc_mem(server.proc.pid)
        with ThreadPoolExecutor(args.slots) as pool:
            list(pool.map(lambda i: client.chat.completions.create(
                model=MODEL, max_tokens=64, messages=[{"role": "user", "content": f"Tell me about {i}."}]),
                range(args.slots)))
        used = proc_mem(server.proc.pid)
    finally:
        server.close()
    file_size = path.stat().st_size
    kv = kv_bytes(path, args.slots * args.ctx_size)
    budget = file_size + kv + 150 * MB
    print("| figure | MiB |\n|---|---|")
    print(f"| model file | {file_size / MB:.1f} |\n| KV cache ({args.slots} x {args.ctx_size}, f16) | {kv / MB:.1f} |")
    print(f"| budget: file + KV + 150 MB | {budget / MB:.1f} |")
    print(f"| RSS after load | {loaded['VmRSS'] / MB:.1f} |")
    print(f"| RSS after serving every slot | {used['VmRSS'] / MB:.1f} |")
    print(f"| peak RSS (VmHWM) | {used['VmHWM'] / MB:.1f} |")
    verdict = "within" if used["VmHWM"] <= budget else "OVER"
    print(f"\npeak RSS is {used['VmHWM'] / budget:.2f} of the budget: {verdict}")


if __name__ == "__main__":
    main()
