"""Read a GGUF file's metadata and tensor table without loading the weights.

Type codes and block sizes come from the ``gguf`` library (llama.cpp's own Python package);
the header walk is ours because ``gguf.GGUFReader`` materializes every vocabulary entry, which
takes tens of seconds for a 262k-token vocabulary. Long arrays (tokens, merges) are skipped and
only their length is kept.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from slmkit.catalog.quant import FTYPE_NAMES
from slmkit.errors import CorruptGGUF

MAGIC = b"GGUF"
KEEP_ARRAY = 64  # arrays longer than this are skipped; their length is kept
_SCALAR = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}


@dataclass
class GGUFInfo:
    path: Path
    version: int
    metadata: dict[str, Any]
    array_lengths: dict[str, int]
    tensor_bytes: int
    tensor_count: int
    tensor_types: dict[str, int] = field(default_factory=dict)  # type name -> tensor count

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def file_type(self) -> str:
        code = self.metadata.get("general.file_type")
        if code is None:
            if not self.tensor_types:
                return "unknown"
            return max(self.tensor_types, key=lambda k: self.tensor_types[k]).lower()
        return FTYPE_NAMES.get(int(code), f"type-{code}")

    @property
    def vocab_size(self) -> int:
        return int(self.array_lengths.get("tokenizer.ggml.tokens") or self.arch("vocab_size", 0))

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return str(value) if value is not None else None

    def parameters(self) -> int:
        return int(self.metadata.get("_parameters", 0))


class _Reader:
    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self.fh = fh
        self.path = path

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise CorruptGGUF(f"{self.path} is truncated or not a GGUF file")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > 1 << 26:
            raise CorruptGGUF(f"{self.path} has a corrupt string length in its header")
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, key: str, lengths: dict[str, int]) -> Any:
        kind = GGUFValueType(vtype)
        if kind is GGUFValueType.STRING:
            return self.string()
        if kind is GGUFValueType.ARRAY:
            return self.array(key, lengths)
        return self.unpack(_SCALAR[kind])

    def array(self, key: str, lengths: dict[str, int]) -> Any:
        item_type, count = GGUFValueType(self.unpack("<I")), self.unpack("<Q")
        lengths[key] = count
        if count <= KEEP_ARRAY:
            return [self.value(item_type, key, lengths) for _ in range(count)]
        if item_type is GGUFValueType.STRING:
            for _ in range(count):
                self.fh.seek(self.unpack("<Q"), 1)
        elif item_type in _SCALAR:
            self.fh.seek(count * struct.calcsize(_SCALAR[item_type]), 1)
        else:
            raise CorruptGGUF(f"{self.path}: unsupported nested array in {key}")
        return None


def read_gguf(path: Path) -> GGUFInfo:
    """Header, metadata and tensor sizes of a GGUF file; CorruptGGUF if it is not one."""
    try:
        with open(path, "rb") as fh:
            return _read(_Reader(fh, path), path)
    except (ValueError, KeyError, struct.error) as exc:  # unknown enum values, bad bytes
        raise CorruptGGUF(f"{path} is not a valid GGUF file ({exc})") from exc


def _read(r: _Reader, path: Path) -> GGUFInfo:
    if r.read(4) != MAGIC:
        raise CorruptGGUF(f"{path} is not a GGUF file (bad magic)")
    version = r.unpack("<I")
    if version not in (2, 3):
        raise CorruptGGUF(f"{path}: unsupported GGUF version {version}")
    n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
    if n_tensors > 1 << 20 or n_kv > 1 << 20:
        raise CorruptGGUF(f"{path} has a corrupt GGUF header")
    metadata: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(n_kv):
        key = r.string()
        metadata[key] = r.value(r.unpack("<I"), key, lengths)
    total, params = 0, 0
    types: dict[str, int] = {}
    for _ in range(n_tensors):
        r.string()
        dims = [r.unpack("<Q") for _ in range(r.unpack("<I"))]
        qtype = GGMLQuantizationType(r.unpack("<I"))
        r.unpack("<Q")  # offset
        elements = 1
        for d in dims:
            elements *= d
        block, size = GGML_QUANT_SIZES[qtype]
        total += elements * size // block
        params += elements
        types[qtype.name] = types.get(qtype.name, 0) + 1
    metadata["_parameters"] = params
    if total > path.stat().st_size:
        raise CorruptGGUF(f"{path} is truncated: its tensors need {total} bytes, the file has {path.stat().st_size}")
    return GGUFInfo(path=path, version=version, metadata=metadata, array_lengths=lengths, tensor_bytes=total,
                    tensor_count=n_tensors, tensor_types=types)
