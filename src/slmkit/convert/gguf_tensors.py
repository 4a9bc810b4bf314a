"""Reading safetensors without torch, and writing tensors into a GGUF at a chosen precision."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.errors import ConversionError

OUTTYPES = ("f32", "f16", "q8_0")
_SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "BF16": None}
Q8_BLOCK = 32


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file as (memory-mapped) numpy arrays; BF16 becomes float32."""
    try:
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error) as exc:
        raise ConversionError(f"cannot read {path}: {exc}") from exc
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + size)
    tensors: dict[str, np.ndarray] = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(meta["dtype"])
        start, end = meta["data_offsets"]
        raw = data[start:end]
        if dtype is None and meta["dtype"] == "BF16":
            array = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif dtype is None:
            raise ConversionError(f"tensor {name} has unsupported dtype {meta['dtype']}")
        else:
            array = raw.view(dtype)
        tensors[name] = array.reshape(meta["shape"])
    return tensors


def folder_tensors(folder: Path) -> Iterator[tuple[str, np.ndarray]]:
    """Every tensor of every ``*.safetensors`` file in ``folder`` (sharded checkpoints too)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        hint = " (PyTorch .bin checkpoints are not supported: save it with safetensors)" if any(
            folder.glob("*.bin")) else ""
        raise ConversionError(f"{folder} has no *.safetensors weights{hint}")
    for path in files:
        yield from read_safetensors(path).items()


def file_type(outtype: str) -> int:
    import gguf

    return int({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype])


def add_tensor(writer: Any, name: str, array: np.ndarray, outtype: str, *, keep_f32: bool = False) -> None:
    """Add one tensor: vectors (norms, biases) and ``keep_f32`` ones stay F32; matrices become F16,
    or Q8_0 when each row splits into whole 32-value blocks (else F16)."""
    import gguf

    data = np.asarray(array, dtype=np.float32)
    if outtype == "f32" or keep_f32 or data.ndim < 2:
        writer.add_tensor(name, np.ascontiguousarray(data))
    elif outtype == "q8_0" and data.shape[-1] % Q8_BLOCK == 0:
        qtype = gguf.GGMLQuantizationType.Q8_0
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)  # bytes; shape inferred
    else:
        writer.add_tensor(name, data.astype(np.float16))


def read_json(path: Path, *, required: bool = True) -> dict[str, Any]:
    """A JSON object file; ConversionError naming it when missing (if required) or unreadable."""
    if not path.is_file():
        if required:
            raise ConversionError(f"missing {path.name} in {path.parent}")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConversionError(f"{path} is not a JSON object")
    return data
