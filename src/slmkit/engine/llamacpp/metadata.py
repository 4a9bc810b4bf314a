"""Facts about a GGUF file read without loading its weights (llama.cpp's vocab-only load)."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp as ll

from slmkit.engine.llamacpp.bindings import Model

# llama_ftype values -> the quantization names Ollama and llama.cpp print
FILE_TYPES = {0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
              11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
              17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
              23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
              29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0"}
# architectures that produce sentence vectors, not text
EMBEDDING_ARCHS = {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "neo-bert",
                   "modern-bert", "t5encoder"}


@dataclass(frozen=True)
class GgufFacts:
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    parameters: int = 0
    size_bytes: int = 0

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", "unknown"))

    def arch_value(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def is_embedding(self) -> bool:
        return self.architecture in EMBEDDING_ARCHS or self.arch_value("pooling_type") not in (None, 0)

    @property
    def quantization(self) -> str:
        file_type = self.metadata.get("general.file_type")
        return FILE_TYPES.get(file_type, "unknown") if isinstance(file_type, int) else "unknown"

    @property
    def parameter_size(self) -> str:
        n = self.parameters
        if n >= 1e9:
            return f"{n / 1e9:.1f}B"
        return f"{n / 1e6:.0f}M" if n >= 1e6 else str(n)

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) else None

    def kv_bytes_per_token(self) -> int:
        """f16 K and V for one token across all layers (an estimate for memory budgets)."""
        layers = int(self.arch_value("block_count", 0) or 0)
        embd = int(self.arch_value("embedding_length", 0) or 0)
        heads = int(self.arch_value("attention.head_count", 1) or 1)
        kv_heads = int(self.arch_value("attention.head_count_kv", heads) or heads)
        return 2 * 2 * layers * embd * kv_heads // max(heads, 1)


def _typed(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def read_facts(path: Path) -> GgufFacts:
    """Metadata (typed scalars; arrays as llama.cpp summarises them), parameters and size."""
    model = Model(path, vocab_only=True)
    try:
        buf = ctypes.create_string_buffer(1 << 20)
        meta: dict[str, Any] = {}
        for i in range(ll.llama_model_meta_count(model.ptr)):
            ll.llama_model_meta_key_by_index(model.ptr, i, buf, len(buf))
            key = buf.value.decode("utf-8", errors="replace")
            ll.llama_model_meta_val_str_by_index(model.ptr, i, buf, len(buf))
            value = buf.value.decode("utf-8", errors="replace")
            meta[key] = value if key == "tokenizer.chat_template" else _typed(value)
        return GgufFacts(path=path, metadata=meta, parameters=int(ll.llama_model_n_params(model.ptr)),
                         size_bytes=path.stat().st_size)
    finally:
        model.close()
