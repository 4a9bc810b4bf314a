"""`slm eval --kv-types`: one GGUF model evaluated once per KV cache type, the first the reference.

A quantized KV cache (`slm serve --cache-type-k/-v q8_0`) stores keys and values in fewer bits;
what that costs shows as drift from the f16 cache on the same text: the same weights, the same
tokens, only the cache's element type differs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slmkit.engine.llamacpp.bindings import KV_TYPES
from slmkit.errors import InvalidRequest
from slmkit.store.resolve import ResolvedModel


@dataclass(frozen=True)
class Evaluated:
    """A model as `slm eval` runs it: a resolved model, and for --kv-types its cache type."""

    name: str
    path: Path
    format: str
    kv_type: str | None = None


def kv_variants(models: list[ResolvedModel], kv_types: str | None) -> list[Evaluated]:
    """The models, or with ``kv_types`` (comma-separated) one entry per type of the one GGUF model."""
    if kv_types is None:
        return [Evaluated(m.name, m.path, m.format) for m in models]
    types = [t.strip() for t in kv_types.split(",") if t.strip()]
    unknown = [t for t in types if t not in KV_TYPES]
    if unknown or not types:
        raise InvalidRequest(f"--kv-types takes {', '.join(KV_TYPES)}; got {kv_types!r}")
    if len(set(types)) != len(types):
        raise InvalidRequest("--kv-types names a type twice")
    if len(models) != 1 or models[0].format != "gguf":
        raise InvalidRequest("--kv-types evaluates one GGUF model (the llama.cpp engine's KV cache types)")
    model = models[0]
    return [Evaluated(f"{model.name} (KV {t})", model.path, model.format, t) for t in types]
