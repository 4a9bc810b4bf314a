"""How fast a model generates on this machine, estimated before it is downloaded.

Generating one token reads every weight once, plus the KV cache of the tokens so far, and
batch-1 decode on a CPU is bound by how fast the cores stream that memory:

    tokens/s        = EFFICIENCY x bandwidth / bytes_per_token        (/ NO_SIMD_PENALTY
                                                                      without AVX2 or NEON)
    bytes_per_token = weights read per token (active parameters x bits per weight / 8,
                      or a GGUF's tensor bytes) + the KV cache of half the context

``bandwidth`` is measured: one thread per physical core reads its own 64 MiB array over and over
for 0.3 s (a bitwise-or reduction: a pure streaming read; numpy releases the GIL), so a busy
machine reads as slower, as it is. ``EFFICIENCY`` was fitted against `slm bench --engine` on the
embedded model; docs/models.md states the measured error.
"""

from __future__ import annotations

import threading
import time

from slmkit.catalog.estimate import Dims

# The share of the measured streaming bandwidth llama.cpp's batch-1 decode reaches: fitted back to back
# on a quiet machine by benchmarks/speed_estimate.py (2026-12-02, 1 and 2 threads: 0.41 and 0.43).
EFFICIENCY = 0.42
NO_SIMD_PENALTY = 3.0  # llama.cpp's scalar fallback for quantized dot products
SIMD = ("avx2", "neon", "asimd")
GPU_BANDWIDTH = 500e9  # an assumption (nvidia-smi does not report bandwidth); the engine itself runs on CPU
_CHUNK_MIB = 64
_MAX_THREADS = 16


def measure_bandwidth(threads: int, *, mib: int = _CHUNK_MIB, seconds: float = 0.3) -> float:
    """Bytes/s that ``threads`` threads read together for about ``seconds``, each reducing its own
    ``mib`` MiB array over and over (long enough to share the cores as a running model would)."""
    import numpy as np

    threads = max(1, min(threads, _MAX_THREADS))
    arrays = [np.ones(mib * 2**20 // 8, dtype=np.uint64) for _ in range(threads)]
    for array in arrays:  # touch every page before timing
        np.bitwise_or.reduce(array)
    barrier = threading.Barrier(threads + 1)
    passes = [0] * threads

    def read(index: int) -> None:
        barrier.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            np.bitwise_or.reduce(arrays[index])  # a streaming read (a float sum is compute-bound)
            passes[index] += 1

    workers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = max(time.perf_counter() - started, 1e-6)
    return sum(passes) * mib * 2**20 / elapsed


def bytes_per_token(weights_bytes: float, dims: Dims, ctx: int, kv_element_bytes: float = 2.0) -> float:
    """What one decode step reads: the weights and the KV cache of half the context."""
    kv_per_token = dims.layers * dims.kv_heads * (dims.head_dim_k + dims.head_dim_v) * kv_element_bytes
    return weights_bytes + kv_per_token * ctx / 2


def decode_speed(per_token_bytes: float, bandwidth: float, cpu_features: list[str] | tuple[str, ...]) -> float:
    """Estimated batch-1 decode tokens/s of one sequence."""
    if per_token_bytes <= 0 or bandwidth <= 0:
        return 0.0
    speed = EFFICIENCY * bandwidth / per_token_bytes
    if not any(f in cpu_features for f in SIMD):
        speed /= NO_SIMD_PENALTY
    return speed


def active_weights_bytes(parameters: int, active_parameters: int | None, weights_bytes: float) -> float:
    """A mixture of experts reads only its active experts per token."""
    if active_parameters and parameters:
        return weights_bytes * active_parameters / parameters
    return weights_bytes
