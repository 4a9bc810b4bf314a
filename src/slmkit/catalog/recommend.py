"""Pick a catalog model for a machine: one made for the task, that fits the memory with headroom
and still generates at least ``min_speed`` tokens/s there (see ``catalog.speed``); among those
the largest, at the best quantization."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slmkit.catalog.estimate import Dims, MemoryEstimate, estimate_entry, human
from slmkit.catalog.hardware import Hardware
from slmkit.catalog.models import TASKS, CatalogEntry, entries
from slmkit.catalog.quant import QUALITY_ORDER
from slmkit.catalog.speed import GPU_BANDWIDTH, active_weights_bytes, bytes_per_token, decode_speed
from slmkit.errors import InvalidRequest

HEADROOM = 0.8  # use at most this share of the memory budget
MIN_QUANT = "q4_k_m"  # below this only when nothing else fits
MIN_SPEED = 10.0  # tokens/s: a chat that reads as it streams


@dataclass(frozen=True)
class Candidate:
    entry: CatalogEntry
    quant: str
    estimate: MemoryEstimate
    tokens_per_s: float = 0.0  # estimated batch-1 decode speed; 0: unknown

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.entry.name, "quant": self.quant, "pull": f"{self.entry.name}:{self.quant}",
                "parameters": self.entry.parameters, "class": self.entry.size_class, "license": self.entry.license,
                "ram_bytes": self.estimate.total_bytes, "disk_bytes": self.estimate.disk_bytes,
                "tokens_per_s": round(self.tokens_per_s, 1)}


@dataclass
class Recommendation:
    task: str
    budget_bytes: int
    device: str
    choice: Candidate | None
    runners_up: list[Candidate] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    min_speed: float = MIN_SPEED

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "device": self.device, "budget_bytes": self.budget_bytes,
                "min_speed": self.min_speed,
                "choice": self.choice.to_dict() if self.choice else None,
                "runners_up": [c.to_dict() for c in self.runners_up], "reasons": self.reasons}


def _budget(hw: Hardware) -> tuple[int, str]:
    if hw.gpus and hw.gpu_memory > hw.ram_available:
        return int(hw.gpu_memory * HEADROOM), "gpu"
    return int(hw.ram_available * HEADROOM), "cpu"


def _speed(entry: CatalogEntry, est: MemoryEstimate, hw: Hardware, device: str, ctx: int) -> float:
    bandwidth = GPU_BANDWIDTH if device == "gpu" else hw.memory_bandwidth
    dims = Dims.from_architecture(entry.name, entry.parameters, entry.architecture)
    weights = active_weights_bytes(entry.parameters, entry.active_parameters, est.weights_bytes)
    features = hw.cpu_features if device == "cpu" else ["neon"]  # a GPU needs no CPU SIMD
    return decode_speed(bytes_per_token(weights, dims, ctx), bandwidth, features)


def _best_fit(entry: CatalogEntry, budget: int, hw: Hardware, device: str, ctx: int, parallel: int, floor: str,
              min_speed: float, kv: tuple[str, str] = ("f16", "f16")) -> Candidate | None:
    """The best quantization of ``entry`` that fits ``budget`` and (when it is known) reaches ``min_speed``."""
    allowed = QUALITY_ORDER[: QUALITY_ORDER.index(floor) + 1]
    fitting = None
    for quant in [q for q in allowed if q in entry.files]:
        est = estimate_entry(entry, quant, ctx=min(ctx, entry.architecture.max_context), parallel=parallel,
                             kv_type=kv[0], kv_type_v=kv[1])
        if est.total_bytes <= budget and (hw.disk_free <= 0 or est.disk_bytes <= hw.disk_free):
            candidate = Candidate(entry, quant, est, _speed(entry, est, hw, device, est.ctx))
            if candidate.tokens_per_s >= min_speed or not candidate.tokens_per_s:
                return candidate
            fitting = fitting or candidate
    return fitting


def recommend(hw: Hardware, *, task: str = "chat", ctx: int = 4096, parallel: int = 1,
              min_speed: float = MIN_SPEED, cache_type_k: str = "f16", cache_type_v: str = "f16") -> Recommendation:
    """Task fit first (a model whose first task is ``task``), then speed (``min_speed`` tokens/s
    when the machine's bandwidth is known; 0 turns the check off), then the largest model."""
    if task not in TASKS:
        raise InvalidRequest(f"unknown task '{task}'; choose one of {', '.join(TASKS)}", param="task")
    budget, device = _budget(hw)
    pool = [e for e in entries(task=task) if e.llama_cpp]
    fits: list[Candidate] = []
    for floor in (MIN_QUANT, QUALITY_ORDER[-1]):
        fits = [c for e in pool
                if (c := _best_fit(e, budget, hw, device, ctx, parallel, floor, min_speed,
                                   (cache_type_k, cache_type_v))) is not None]
        if fits:
            break
    fast = [c for c in fits if c.tokens_per_s >= min_speed or not c.tokens_per_s]
    if fast:  # made for the task first, then the largest; among equals more bits
        fast.sort(key=lambda c: (c.entry.tasks[0] == task, c.entry.parameters, -QUALITY_ORDER.index(c.quant)),
                  reverse=True)
    else:  # nothing reaches the speed: the fastest that fits
        fast = sorted(fits, key=lambda c: c.tokens_per_s, reverse=True)
    rec = Recommendation(task=task, budget_bytes=budget, device=device, choice=fast[0] if fast else None,
                         runners_up=fast[1:4], min_speed=min_speed)
    rec.reasons = _reasons(rec, hw, ctx, parallel)
    return rec


def _reasons(rec: Recommendation, hw: Hardware, ctx: int, parallel: int) -> list[str]:
    memory = "GPU memory" if rec.device == "gpu" else "available RAM"
    source = " (as given)" if hw.overridden else ""
    lines = [f"budget: {int(HEADROOM * 100)}% of {memory}{source} = {human(rec.budget_bytes)}, "
             f"for {parallel} slot(s) of {ctx} tokens"]
    if rec.choice is None:
        lines.append(f"no {rec.task} model in the catalog fits; try a smaller --ctx or --parallel")
        return lines
    c = rec.choice
    speed = f"~{c.tokens_per_s:.0f} tokens/s" if c.tokens_per_s else "speed not estimated"
    if c.tokens_per_s and c.tokens_per_s < rec.min_speed:
        lines.append(f"no {rec.task} model reaches {rec.min_speed:g} tokens/s here; {c.entry.name} is the fastest "
                     f"that fits ({speed}); lower --min-speed to trade speed for size")
    else:
        target = f" and reaches {rec.min_speed:g} tokens/s" if c.tokens_per_s and rec.min_speed else ""
        lines.append(f"{c.entry.name} ({c.entry.parameters / 1e9:.2f}B, {c.entry.size_class}) is the largest "
                     f"{rec.task} model that fits{target}: {speed} estimated")
    if c.tokens_per_s:
        where = "an assumed GPU" if rec.device == "gpu" else (f"{hw.physical_cores or hw.cores} core(s) reading "
                                                              f"{hw.memory_bandwidth / 1e9:.1f} GB/s")
        lines.append(f"speed: batch-1 decode on {where}, {human(c.estimate.weights_bytes)} of weights per token")
    lines.append(f"at {c.quant} it needs {human(c.estimate.total_bytes)} "
                 f"(weights {human(c.estimate.weights_bytes)}, KV cache {human(c.estimate.kv_cache_bytes)})")
    if c.quant != QUALITY_ORDER[0]:
        lines.append(f"a higher-bit build of {c.entry.name} would not leave the headroom or reach the speed")
    for r in rec.runners_up:
        speed = f", ~{r.tokens_per_s:.0f} tokens/s" if r.tokens_per_s else ""
        lines.append(f"runner-up: {r.entry.name} at {r.quant}, {human(r.estimate.total_bytes)}{speed}")
    return lines
