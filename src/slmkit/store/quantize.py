"""``slm quantize``: llama.cpp's ``llama_model_quantize`` into the store, with a report."""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from slmkit.catalog.quant import FILE_BPW, FTYPES, UNQUANTIZED
from slmkit.errors import InvalidRequest, StoreError
from slmkit.store.gguf_meta import read_gguf
from slmkit.store.names import parse_ref
from slmkit.store.resolve import resolve_model
from slmkit.store.store import Manifest, Store, sha256_file

Progress = Callable[[int, int], None]  # (bytes written, bytes expected)


@dataclass(frozen=True)
class QuantizeReport:
    source: str
    name: str
    type: str
    source_type: str
    size_before: int
    size_after: int
    bpw_before: float
    bpw_after: float
    seconds: float
    digest: str
    path: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_type(qtype: str) -> str:
    key = qtype.lower()
    if key not in FTYPES:
        raise InvalidRequest(f"unknown quantization type '{qtype}'; choose one of {', '.join(FTYPES)}", param="type")
    return key


def quantize(store: Store, source: str, qtype: str, *, name: str | None = None, allow_requantize: bool = False,
             threads: int | None = None, progress: Progress | None = None,
             warn: Callable[[str], None] | None = None, allow_paths: bool = True) -> QuantizeReport:
    key = _check_type(qtype)
    resolved = resolve_model(source, store.home, allow_paths=allow_paths)
    info = read_gguf(resolved.path)
    if info.file_type not in UNQUANTIZED:
        if not allow_requantize:
            raise InvalidRequest(f"{resolved.name} is already quantized ({info.file_type}); requantizing loses more "
                                 "quality than quantizing from f16/bf16: pass --allow-requantize to do it anyway",
                                 param="allow_requantize")
        if warn:
            warn(f"requantizing {info.file_type} -> {key}: quality will be lower than quantizing from f16/bf16")
    ref = parse_ref(name or f"{resolved.name.partition(':')[0]}:{key}")
    expected = int(info.parameters() * FILE_BPW.get(key, 8.0) / 8) or 1
    temp = store.temp_path(".gguf")
    started = time.perf_counter()
    try:
        _run(resolved.path, temp, key, allow_requantize, threads, expected, progress)
        seconds = time.perf_counter() - started
        after = read_gguf(temp)
        digest = f"sha256:{sha256_file(temp)}"
        size_after = temp.stat().st_size
        blob = store.commit_blob(temp, digest)
    finally:
        temp.unlink(missing_ok=True)
    profile = resolved.profile
    store.write_manifest(Manifest(name=ref.name, tag=ref.tag, digest=digest, size=size_after,
                                  file_name=f"{ref.name}-{key}.gguf", profile=profile,
                                  source={"kind": "quantize", "from": resolved.name, "type": key}))
    params = max(1, info.parameters())
    return QuantizeReport(source=resolved.name, name=str(ref), type=key, source_type=info.file_type,
                          size_before=resolved.path.stat().st_size, size_after=size_after,
                          bpw_before=round(info.tensor_bytes * 8 / params, 3),
                          bpw_after=round(after.tensor_bytes * 8 / params, 3), seconds=round(seconds, 3),
                          digest=digest, path=str(blob))


def _run(src: Path, dst: Path, key: str, allow_requantize: bool, threads: int | None, expected: int,
         progress: Progress | None) -> None:
    import llama_cpp as ll

    from slmkit.engine.llamacpp.bindings import init_backend

    init_backend()
    params = ll.llama_model_quantize_default_params()
    params.ftype = FTYPES[key]
    params.allow_requantize = allow_requantize
    params.nthread = threads or os.cpu_count() or 1
    result: dict[str, int] = {}

    def work() -> None:
        result["rc"] = int(ll.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)))

    worker = threading.Thread(target=work, name="slm-quantize", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(0.2)
        if progress:
            progress(min(dst.stat().st_size if dst.exists() else 0, expected), expected)
    if result.get("rc", 1) != 0:
        raise StoreError(f"llama.cpp could not quantize {src.name} to {key} (code {result.get('rc')})",
                         code="quantize_failed")
    if progress:
        progress(expected, expected)
