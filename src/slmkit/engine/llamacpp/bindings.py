"""Owning wrappers over llama-cpp-python's raw bindings.

Each class frees what it allocates; nothing here knows about requests or HTTP.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp as ll
import numpy as np

from slmkit.engine.base import ModelInfo
from slmkit.errors import ModelLoadError

log = logging.getLogger("slmkit.llama")

# ggml_log_level: 1 debug, 2 info, 3 warn, 4 error, 5 continuation. llama.cpp is chatty at
# info level, so only its warnings and errors surface at our default level.
_LEVELS = {3: logging.WARNING, 4: logging.ERROR}
# KV cache element types (--cache-type-k/-v); quantized V needs flash attention, which llama.cpp
# turns on by itself on CPU.
KV_TYPES = {"f16": ll.GGML_TYPE_F16, "q8_0": ll.GGML_TYPE_Q8_0, "q4_0": ll.GGML_TYPE_Q4_0}
_backend_lock = threading.Lock()
_backend_state: dict[str, Any] = {}


def _log_callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    msg = text.decode("utf-8", errors="replace").rstrip()
    if msg:
        log.log(_LEVELS.get(level, logging.DEBUG), msg)


def init_backend() -> None:
    """Initialise llama.cpp once per process and route its log through ``logging``."""
    with _backend_lock:
        if _backend_state:
            return
        callback = ll.llama_log_callback(_log_callback)
        ll.llama_log_set(callback, ctypes.c_void_p(0))
        ll.llama_backend_init()
        _backend_state["callback"] = callback  # keep the C callback alive


class Model:
    """A loaded GGUF model and its vocabulary."""

    def __init__(self, path: Path, *, vocab_only: bool = False) -> None:
        init_backend()
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        params = ll.llama_model_default_params()
        params.n_gpu_layers = 0
        params.vocab_only = vocab_only
        ptr = ll.llama_model_load_from_file(str(path).encode(), params)
        if not ptr:
            raise ModelLoadError(f"llama.cpp could not load {path} (not a valid GGUF model?)")
        self.ptr = ptr
        self.path = path
        self.vocab = ll.llama_model_get_vocab(ptr)
        self.n_vocab = ll.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = ll.llama_model_n_ctx_train(ptr)
        self.add_bos = bool(ll.llama_vocab_get_add_bos(self.vocab))
        self._piece_bufs = threading.local()  # one buffer per thread: request threads and the scheduler's

    def close(self) -> None:
        if self.ptr:
            ll.llama_model_free(self.ptr)
            self.ptr = None

    # -- metadata -----------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = ll.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            ll.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def chat_template(self) -> str | None:
        raw = ll.llama_model_chat_template(self.ptr, None)
        return raw.decode("utf-8") if raw else None

    def describe(self) -> dict[str, Any]:
        buf = ctypes.create_string_buffer(256)
        ll.llama_model_desc(self.ptr, buf, len(buf))
        return {
            "description": buf.value.decode(errors="replace"),
            "architecture": self.meta("general.architecture"),
            "parameters": int(ll.llama_model_n_params(self.ptr)),
            "size_bytes": int(ll.llama_model_size(self.ptr)),
            "context_length_train": self.n_ctx_train,
            "vocab_size": self.n_vocab,
        }

    # -- tokens --------------------------------------------------------------------
    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        cap = len(data) + 8
        arr = (ll.llama_token * cap)()
        n = ll.llama_tokenize(self.vocab, data, len(data), arr, cap, add_special, parse_special)
        if n < 0:
            arr = (ll.llama_token * -n)()
            n = ll.llama_tokenize(self.vocab, data, len(data), arr, -n, add_special, parse_special)
        return list(arr[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        buf: ctypes.Array[ctypes.c_char] | None = getattr(self._piece_bufs, "buf", None)
        if buf is None:
            buf = self._piece_bufs.buf = ctypes.create_string_buffer(256)
        n = ll.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            big = ctypes.create_string_buffer(-n)
            n = ll.llama_token_to_piece(self.vocab, token, big, len(big), 0, special)
            return big.raw[:n]
        return buf.raw[:n]

    def detokenize(self, tokens: Sequence[int], *, special: bool = False) -> str:
        return b"".join(self.piece(t, special=special) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        return bool(ll.llama_vocab_is_eog(self.vocab, token))

    @functools.cached_property
    def eog_tokens(self) -> tuple[int, ...]:
        """Every end-of-generation token (EOS, EOT, ...)."""
        return tuple(t for t in range(self.n_vocab) if ll.llama_vocab_is_eog(self.vocab, t))

    @functools.cached_property
    def special_texts(self) -> tuple[str, ...]:
        """The text of every control and user-defined token (what parse_special turns into them)."""
        flags = ll.LLAMA_TOKEN_ATTR_CONTROL | ll.LLAMA_TOKEN_ATTR_USER_DEFINED
        texts = {self.special_text(t) for t in range(self.n_vocab) if ll.llama_vocab_get_attr(self.vocab, t) & flags}
        return tuple(sorted(t for t in texts if t))

    def special_text(self, token: int) -> str:
        return self.piece(token, special=True).decode("utf-8", errors="replace") if token >= 0 else ""

    @property
    def bos(self) -> int:
        return int(ll.llama_vocab_bos(self.vocab))

    @property
    def eos(self) -> int:
        return int(ll.llama_vocab_eos(self.vocab))


class Context:
    """A llama.cpp context with one KV sequence per slot."""

    def __init__(self, model: Model, *, n_seq: int, ctx_per_seq: int, n_batch: int, threads: int,
                 type_k: str = "f16", type_v: str = "f16") -> None:
        params = ll.llama_context_default_params()
        params.type_k = KV_TYPES[type_k]
        params.type_v = KV_TYPES[type_v]
        params.n_ctx = n_seq * ctx_per_seq
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq
        params.n_threads = threads
        params.n_threads_batch = threads
        params.kv_unified = False  # each slot owns ctx_per_seq cells
        params.no_perf = True
        ptr = ll.llama_init_from_model(model.ptr, params)
        if not ptr:
            raise ModelLoadError(f"llama.cpp could not create a context for {model.path}")
        self.ptr = ptr
        self.model = model
        self.memory = ll.llama_get_memory(ptr)
        self.n_ctx_seq = int(ll.llama_n_ctx_seq(ptr))
        self.n_batch = n_batch

    def decode(self, batch: Batch) -> int:
        return int(ll.llama_decode(self.ptr, batch.raw))

    def seq_rm(self, seq: int, start: int, end: int = -1) -> bool:
        return bool(ll.llama_memory_seq_rm(self.memory, seq, start, end))

    def logits(self, index: int) -> Any:
        return ll.llama_get_logits_ith(self.ptr, index)

    def output_logits(self, rows: int) -> np.ndarray:
        """A copy of the last decode's logits, one row per token added with ``logits=True``
        (in batch order), shape ``(rows, n_vocab)``."""
        ptr = ll.llama_get_logits(self.ptr)
        return np.ctypeslib.as_array(ptr, shape=(rows, self.model.n_vocab)).copy()

    def close(self) -> None:
        if self.ptr:
            ll.llama_free(self.ptr)
            self.ptr = None


class Batch:
    """A reusable ``llama_batch`` of up to ``capacity`` tokens, one sequence id each."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw = ll.llama_batch_init(capacity, 0, 1)
        self.n = 0

    def clear(self) -> None:
        self.n = 0
        self.raw.n_tokens = 0

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append a token; returns its index in the batch."""
        i = self.n
        raw = self.raw
        raw.token[i] = token
        raw.pos[i] = pos
        raw.n_seq_id[i] = 1
        raw.seq_id[i][0] = seq
        raw.logits[i] = logits
        self.n = i + 1
        raw.n_tokens = self.n
        return i

    @property
    def free(self) -> int:
        return self.capacity - self.n

    def close(self) -> None:
        if self.raw is not None:
            ll.llama_batch_free(self.raw)
            self.raw = None


def gguf_info(model: Model, path: Path, *, context_length: int, slots: int = 1, kind: str = "chat",
              **extra: Any) -> ModelInfo:
    """The ModelInfo of a loaded GGUF model."""
    desc = model.describe()
    return ModelInfo(format="gguf", file=str(path), architecture=str(desc["architecture"] or "unknown"),
                     vocab_size=int(desc["vocab_size"]), context_length=context_length, slots=slots, kind=kind,
                     parameters=int(desc["parameters"]), size_bytes=int(desc["size_bytes"]),
                     extra={"description": desc["description"], "context_length_train": desc["context_length_train"],
                            **extra})
