"""Pick the largest catalog model, at the best quantization, that fits a machine with headroom."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slmkit.catalog.estimate import MemoryEstimate, estimate_entry, human
from slmkit.catalog.hardware import Hardware
from slmkit.catalog.models import TASKS, CatalogEntry, entries
from slmkit.catalog.quant import QUALITY_ORDER
from slmkit.errors import InvalidRequest

HEADROOM = 0.8  # use at most this share of the memory budget
MIN_QUANT = "q4_k_m"  # below this only when nothing else fits


@dataclass(frozen=True)
class Candidate:
    entry: CatalogEntry
    quant: str
    estimate: MemoryEstimate

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.entry.name, "quant": self.quant, "pull": f"{self.entry.name}:{self.quant}",
                "parameters": self.entry.parameters, "class": self.entry.size_class, "license": self.entry.license,
                "ram_bytes": self.estimate.total_bytes, "disk_bytes": self.estimate.disk_bytes}


@dataclass
class Recommendation:
    task: str
    budget_bytes: int
    device: str
    choice: Candidate | None
    runners_up: list[Candidate] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "device": self.device, "budget_bytes": self.budget_bytes,
                "choice": self.choice.to_dict() if self.choice else None,
                "runners_up": [c.to_dict() for c in self.runners_up], "reasons": self.reasons}


def _budget(hw: Hardware) -> tuple[int, str]:
    if hw.gpus and hw.gpu_memory > hw.ram_available:
        return int(hw.gpu_memory * HEADROOM), "gpu"
    return int(hw.ram_available * HEADROOM), "cpu"


def _best_fit(entry: CatalogEntry, budget: int, disk: int, ctx: int, parallel: int, floor: str,
              kv: tuple[str, str] = ("f16", "f16")) -> Candidate | None:
    allowed = QUALITY_ORDER[: QUALITY_ORDER.index(floor) + 1]
    for quant in [q for q in allowed if q in entry.files]:
        est = estimate_entry(entry, quant, ctx=min(ctx, entry.architecture.max_context), parallel=parallel,
                             kv_type=kv[0], kv_type_v=kv[1])
        if est.total_bytes <= budget and (disk <= 0 or est.disk_bytes <= disk):
            return Candidate(entry, quant, est)
    return None


def recommend(hw: Hardware, *, task: str = "chat", ctx: int = 4096, parallel: int = 1,
              cache_type_k: str = "f16", cache_type_v: str = "f16") -> Recommendation:
    if task not in TASKS:
        raise InvalidRequest(f"unknown task '{task}'; choose one of {', '.join(TASKS)}", param="task")
    budget, device = _budget(hw)
    pool = [e for e in entries(task=task) if e.llama_cpp]
    fits: list[Candidate] = []
    for floor in (MIN_QUANT, QUALITY_ORDER[-1]):
        fits = [c for e in pool if (c := _best_fit(e, budget, hw.disk_free, ctx, parallel, floor,
                                                   (cache_type_k, cache_type_v))) is not None]
        if fits:
            break
    # Largest model first; among equals, the one whose task list leads with this task, then more bits.
    fits.sort(key=lambda c: (c.entry.parameters, c.entry.tasks[0] == task, -QUALITY_ORDER.index(c.quant)),
              reverse=True)
    rec = Recommendation(task=task, budget_bytes=budget, device=device, choice=fits[0] if fits else None,
                         runners_up=fits[1:4])
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
    lines.append(f"{c.entry.name} ({c.entry.parameters / 1e9:.2f}B, {c.entry.size_class}) is the largest {rec.task} "
                 f"model that fits; at {c.quant} it needs {human(c.estimate.total_bytes)} "
                 f"(weights {human(c.estimate.weights_bytes)}, KV cache {human(c.estimate.kv_cache_bytes)})")
    if c.quant != QUALITY_ORDER[0]:
        lines.append(f"a higher-bit build of {c.entry.name} would not leave the headroom")
    for r in rec.runners_up:
        lines.append(f"runner-up: {r.entry.name} at {r.quant}, {human(r.estimate.total_bytes)}")
    return lines
