"""Bits per weight of llama.cpp's quantization types, and bytes per element of KV-cache types.

Single ggml tensor types have exact sizes (block bytes / block elements). The file types
(``q4_k_m`` ...) mix tensor types; their averages are llama.cpp's published figures for a
7B Llama (``tools/quantize/README.md``).
"""

from __future__ import annotations

from slmkit.errors import InvalidRequest

# ggml tensor types: bytes per block * 8 / elements per block.
TENSOR_BPW: dict[str, float] = {
    "f32": 32.0, "f16": 16.0, "bf16": 16.0,
    "q4_0": 4.5, "q4_1": 5.0, "q5_0": 5.5, "q5_1": 6.0, "q8_0": 8.5, "q8_1": 9.0,
    "q2_k": 2.625, "q3_k": 3.4375, "q4_k": 4.5, "q5_k": 5.5, "q6_k": 6.5625, "q8_k": 9.125,
    "iq1_s": 1.5625, "iq1_m": 1.75, "iq2_xxs": 2.0625, "iq2_xs": 2.3125, "iq2_s": 2.5,
    "iq3_xxs": 3.0625, "iq3_s": 3.4375, "iq4_nl": 4.5, "iq4_xs": 4.25,
    "tq1_0": 1.6875, "tq2_0": 2.0625, "i2_s": 2.0,
}

# File types (what `slm quantize --type` and catalog quant names use): average bits per weight.
FILE_BPW: dict[str, float] = {
    **{k: v for k, v in TENSOR_BPW.items() if not k.endswith(("_k", "q8_1"))},
    "q2_k": 3.35, "q3_k_s": 3.50, "q3_k_m": 3.91, "q3_k_l": 4.27,
    "q4_k_s": 4.58, "q4_k_m": 4.84, "q5_k_s": 5.52, "q5_k_m": 5.68, "q6_k": 6.56,
    "iq2_m": 2.7, "iq3_m": 3.66,
}

# KV cache element types llama.cpp accepts for --cache-type-k/v: bytes per element.
KV_BYTES: dict[str, float] = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32,
                              "q5_0": 22 / 32, "q4_1": 20 / 32, "q4_0": 18 / 32}

# Quality order for recommendations, best first (more bits, better kernels).
QUALITY_ORDER = ["q8_0", "q6_k", "q5_k_m", "q4_k_m", "q3_k_m"]

# llama.cpp's llama_ftype values for the file types `slm quantize` writes.
FTYPES: dict[str, int] = {
    "f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q8_0": 7, "q5_0": 8, "q5_1": 9,
    "q2_k": 10, "q3_k_s": 11, "q3_k_m": 12, "q3_k_l": 13, "q4_k_s": 14, "q4_k_m": 15,
    "q5_k_s": 16, "q5_k_m": 17, "q6_k": 18, "iq2_xxs": 19, "iq2_xs": 20, "q2_k_s": 21,
    "iq3_xs": 22, "iq3_xxs": 23, "iq1_s": 24, "iq4_nl": 25, "iq3_s": 26, "iq3_m": 27,
    "iq2_s": 28, "iq2_m": 29, "iq4_xs": 30, "iq1_m": 31, "bf16": 32, "tq1_0": 36, "tq2_0": 37,
}
FTYPE_NAMES: dict[int, str] = {v: k for k, v in FTYPES.items()}
UNQUANTIZED = {"f32", "f16", "bf16"}


def bits_per_weight(quant: str) -> float:
    key = quant.lower()
    if key not in FILE_BPW:
        raise InvalidRequest(f"unknown quantization '{quant}'; known: {', '.join(sorted(FILE_BPW))}", param="quant")
    return FILE_BPW[key]


def kv_bytes(kv_type: str) -> float:
    key = kv_type.lower()
    if key not in KV_BYTES:
        raise InvalidRequest(f"unknown KV cache type '{kv_type}'; known: {', '.join(KV_BYTES)}", param="kv_type")
    return KV_BYTES[key]
