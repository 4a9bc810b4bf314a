"""How much memory and disk a model needs at a given quantization, context and concurrency.

    weights  = parameters x bits-per-weight / 8          (or the tensor bytes of a GGUF on disk)
    kv_cache = 2 x layers x ctx x kv_heads x head_dim x bytes-per-element x slots
    outputs  = slots x vocab x 4                         (one row of f32 logits per slot)
    compute  = n_ubatch x 4 x (8 x hidden + 2 x ctx)     (activations of one prompt chunk)
    runtime  = RUNTIME_BYTES                             (Python, the server, llama.cpp's code)

Our engine gives every slot its own ``ctx`` cells (``kv_unified = False``), so the KV cache
grows with ``parallel``. llama.cpp also reserves a worst-case compute buffer that includes
``n_ubatch x vocab`` f32 logits; the engine never asks for more than one logit row per slot, so
those pages are never touched and do not count against RAM. The figures are what the process
holds resident once serving; a test holds them within 15% of a real server's RSS.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from slmkit.catalog.models import Architecture, CatalogEntry
from slmkit.catalog.quant import bits_per_weight, kv_bytes

if TYPE_CHECKING:
    from slmkit.store.gguf_meta import GGUFInfo

MIB = 1024 * 1024
RUNTIME_BYTES = 100 * MIB
N_UBATCH = 512


@dataclass(frozen=True)
class Dims:
    """What the estimate needs to know about a model."""

    name: str
    parameters: int
    layers: int
    hidden_size: int
    kv_heads: int
    head_dim_k: int
    head_dim_v: int
    vocab_size: int
    max_context: int

    @classmethod
    def from_architecture(cls, name: str, parameters: int, arch: Architecture) -> Dims:
        return cls(name, parameters, arch.layers, arch.hidden_size, arch.kv_heads, arch.head_dim, arch.head_dim,
                   arch.vocab_size, arch.max_context)

    @classmethod
    def from_gguf(cls, info: GGUFInfo) -> Dims:
        hidden = int(info.arch("embedding_length", 0))
        heads = int(info.arch("attention.head_count", 1) or 1)
        kv_heads = info.arch("attention.head_count_kv", heads)
        kv_heads = int(max(kv_heads) if isinstance(kv_heads, list) else kv_heads)
        head_k = int(info.arch("attention.key_length", hidden // heads))
        head_v = int(info.arch("attention.value_length", head_k))
        return cls(info.path.stem, info.parameters(), int(info.arch("block_count", 0)), hidden, kv_heads,
                   head_k, head_v, info.vocab_size, int(info.arch("context_length", 0)))


@dataclass(frozen=True)
class MemoryEstimate:
    model: str
    quant: str
    ctx: int
    parallel: int
    kv_type: str
    weights_bytes: int
    kv_cache_bytes: int
    output_bytes: int
    compute_bytes: int
    runtime_bytes: int
    disk_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.output_bytes + self.compute_bytes + self.runtime_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total_bytes": self.total_bytes}


def kv_cache_bytes(dims: Dims, ctx: int, parallel: int, kv_type: str = "f16", kv_type_v: str | None = None) -> int:
    """Keys of type ``kv_type``, values of ``kv_type_v`` (default: the same)."""
    per_token = dims.layers * dims.kv_heads * (dims.head_dim_k * kv_bytes(kv_type)
                                               + dims.head_dim_v * kv_bytes(kv_type_v or kv_type))
    return int(per_token * ctx * parallel)


def estimate(dims: Dims, *, quant: str, weights_bytes: int | None = None, ctx: int = 4096, parallel: int = 1,
             kv_type: str = "f16", kv_type_v: str | None = None, n_ubatch: int = N_UBATCH,
             disk_bytes: int | None = None) -> MemoryEstimate:
    """Memory to serve ``dims`` with ``parallel`` slots of ``ctx`` tokens each."""
    if weights_bytes is None:
        weights_bytes = int(dims.parameters * bits_per_weight(quant) / 8)
    ubatch = min(n_ubatch, ctx)
    return MemoryEstimate(
        model=dims.name, quant=quant, ctx=ctx, parallel=parallel,
        kv_type=kv_type if kv_type_v in (None, kv_type) else f"{kv_type}/{kv_type_v}",
        weights_bytes=weights_bytes,
        kv_cache_bytes=kv_cache_bytes(dims, ctx, parallel, kv_type, kv_type_v),
        output_bytes=parallel * dims.vocab_size * 4,
        compute_bytes=ubatch * 4 * (8 * dims.hidden_size + 2 * ctx),
        runtime_bytes=RUNTIME_BYTES,
        disk_bytes=disk_bytes if disk_bytes is not None else weights_bytes,
    )


def estimate_entry(entry: CatalogEntry, quant: str | None = None, **kwargs: Any) -> MemoryEstimate:
    quant = (quant or "q4_k_m").lower()
    dims = Dims.from_architecture(entry.name, entry.parameters, entry.architecture)
    return estimate(dims, quant=quant, **kwargs)


def estimate_file(path: Path, name: str | None = None, **kwargs: Any) -> MemoryEstimate:
    """Estimate from the real dimensions and tensor sizes in a GGUF file."""
    from slmkit.store.gguf_meta import read_gguf

    info = read_gguf(path)
    dims = Dims.from_gguf(info)
    if name:
        dims = replace(dims, name=name)
    return estimate(dims, quant=info.file_type, weights_bytes=info.tensor_bytes,
                    disk_bytes=path.stat().st_size, **kwargs)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def parse_size(text: str) -> int:
    """'4G', '512M', '64GB', '1.5 GiB' -> bytes (binary units)."""
    cleaned = text.strip().upper().replace("IB", "").replace("B", "").replace(" ", "")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    factor = units.get(cleaned[-1:], 1)
    number = cleaned[:-1] if cleaned[-1:] in units else cleaned
    try:
        value = float(number)
    except ValueError:
        from slmkit.errors import InvalidRequest

        raise InvalidRequest(f"cannot read the size '{text}'; use forms like 4G or 512M") from None
    return int(value * factor)
