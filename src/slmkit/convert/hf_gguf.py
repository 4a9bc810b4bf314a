"""A Hugging Face folder of a llama-family causal LM (safetensors) -> a GGUF file, with the ``gguf``
library alone (no torch, no llama.cpp checkout).

What llama.cpp needs that the folder spells differently:

- tensor names: ``model.layers.N.self_attn.q_proj.weight`` -> ``blk.N.attn_q.weight`` (gguf's
  tensor name map for the architecture);
- for the ``llama`` architecture, Q and K rows reordered: Hugging Face's checkpoints rotate the
  two halves of each head (``rotate_half``), llama.cpp's RoPE rotates adjacent pairs, so each
  head's rows are interleaved back (``_permute``); Qwen2 checkpoints are used as they are;
- hyperparameters under ``ARCH.*`` keys: context length, sizes, heads and KV heads, RoPE base and
  scaling (Llama 3 scaling as a ``rope_freqs`` tensor), RMS norm epsilon;
- the tokenizer, special tokens and chat template (``gguf_vocab``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.convert.gguf_tensors import add_tensor, file_type, folder_tensors, read_json
from slmkit.convert.gguf_vocab import bpe_vocab, write_bpe_vocab
from slmkit.errors import ConversionError

# Hugging Face architecture -> (llama.cpp architecture, whether Q/K rows need the RoPE permutation)
CAUSAL_ARCHITECTURES = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
    "Qwen2ForCausalLM": ("qwen2", False),
}
_SKIPPED = ("rotary_emb.inv_freq",)
Step = Callable[[str], None]


@dataclass(frozen=True)
class CausalConfig:
    architecture: str  # the Hugging Face one
    arch: str  # llama.cpp's
    permute: bool
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int | None  # only when the config states it
    context: int
    vocab_size: int
    rms_eps: float
    rope: dict[str, Any]
    tied: bool

    @classmethod
    def from_json(cls, cfg: dict[str, Any]) -> CausalConfig:
        arch_name = (cfg.get("architectures") or ["?"])[0]
        arch, permute = CAUSAL_ARCHITECTURES[arch_name]
        try:
            heads = int(cfg["num_attention_heads"])
            rope = dict(cfg.get("rope_parameters") or cfg.get("rope_scaling") or {})
            rope.setdefault("rope_theta", float(cfg.get("rope_theta", 10000.0)))
            return cls(architecture=arch_name, arch=arch, permute=permute, layers=int(cfg["num_hidden_layers"]),
                       hidden=int(cfg["hidden_size"]), ffn=int(cfg["intermediate_size"]), heads=heads,
                       kv_heads=int(cfg.get("num_key_value_heads") or heads),
                       head_dim=int(cfg["head_dim"]) if cfg.get("head_dim") else None,
                       context=int(cfg.get("max_position_embeddings", 2048)), vocab_size=int(cfg["vocab_size"]),
                       rms_eps=float(cfg.get("rms_norm_eps", 1e-6)), rope=rope,
                       tied=bool(cfg.get("tie_word_embeddings", False)))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConversionError(f"config.json lacks a usable {exc} for {arch_name}") from exc

    @property
    def rope_dim(self) -> int:
        return self.head_dim or self.hidden // self.heads


def write_causal_gguf(folder: Path, out: Path, config: dict[str, Any], *, name: str, outtype: str,
                      step: Step | None = None) -> int:
    """Write ``out`` (the caller's temporary name) from ``folder``; returns the tensor count."""
    import gguf

    cfg = CausalConfig.from_json(config)
    vocab = bpe_vocab(folder, cfg.vocab_size)
    writer = gguf.GGUFWriter(str(out), cfg.arch)
    try:
        writer.add_name(name)
        writer.add_type(gguf.GGUFType.MODEL)
        _write_hparams(writer, cfg, outtype)
        write_bpe_vocab(writer, folder, vocab)
        count = _write_tensors(writer, folder, cfg, outtype, step)
        if step:
            step(f"writing {count} tensors")
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return count


def _write_hparams(writer: Any, cfg: CausalConfig, outtype: str) -> None:
    writer.add_context_length(cfg.context)
    writer.add_embedding_length(cfg.hidden)
    writer.add_feed_forward_length(cfg.ffn)
    writer.add_block_count(cfg.layers)
    writer.add_head_count(cfg.heads)
    writer.add_head_count_kv(cfg.kv_heads)
    writer.add_layer_norm_rms_eps(cfg.rms_eps)
    writer.add_rope_freq_base(float(cfg.rope["rope_theta"]))
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_rope_dimension_count(cfg.rope_dim)
    if cfg.head_dim is not None:
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
    _write_rope_scaling(writer, cfg)
    writer.add_file_type(file_type(outtype))


def _write_rope_scaling(writer: Any, cfg: CausalConfig) -> None:
    import gguf

    kind = str(cfg.rope.get("rope_type") or cfg.rope.get("type") or "default").lower()
    factor = cfg.rope.get("factor")
    if kind in ("default", "llama3"):  # llama3 scaling is a tensor (rope_freqs), written with the weights
        return
    if kind == "linear" and factor:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(factor))
    elif kind == "yarn" and factor:
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(factor))
        writer.add_rope_scaling_orig_ctx_len(int(cfg.rope["original_max_position_embeddings"]))
    else:
        raise ConversionError(f"RoPE scaling '{kind}' is not supported (default, linear, yarn and llama3 are)")


def _write_tensors(writer: Any, folder: Path, cfg: CausalConfig, outtype: str, step: Step | None) -> int:
    import gguf

    arch = next(key for key, value in gguf.MODEL_ARCH_NAMES.items() if value == cfg.arch)
    names = gguf.get_tensor_name_map(arch, cfg.layers)
    count = 0
    for hf_name, array in folder_tensors(folder):
        if hf_name.endswith(_SKIPPED) or (cfg.tied and hf_name == "lm_head.weight"):
            continue
        new_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ConversionError(f"cannot map the tensor {hf_name} of {cfg.architecture} to a GGUF name")
        data = np.asarray(array, dtype=np.float32)
        if cfg.permute and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute(data, cfg.heads)
        elif cfg.permute and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute(data, cfg.kv_heads)
        add_tensor(writer, new_name, data, outtype)
        count += 1
        if step and count % 16 == 0:
            step(f"converting tensors ({count})")
    freqs = _llama3_rope_factors(cfg)
    if freqs is not None:
        add_tensor(writer, gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.ROPE_FREQS] + ".weight", freqs, "f32")
        count += 1
    if count == 0:
        raise ConversionError(f"{folder} holds no tensors")
    return count


def _permute(rows: np.ndarray, heads: int) -> np.ndarray:
    """Each head's rows [first half | second half] -> interleaved pairs (h0, h_half, h1, h_half+1, ...)."""
    if rows.shape[0] % (2 * heads):
        raise ConversionError(f"cannot split {rows.shape[0]} rows into {heads} heads for RoPE")
    shape = rows.shape
    split = rows.reshape(heads, 2, shape[0] // heads // 2, *shape[1:])
    return np.ascontiguousarray(split.swapaxes(1, 2).reshape(shape))


def _llama3_rope_factors(cfg: CausalConfig) -> np.ndarray | None:
    """Llama 3.1's frequency-dependent RoPE scaling, as the per-dimension factors llama.cpp reads."""
    if str(cfg.rope.get("rope_type", "")).lower() != "llama3":
        return None
    dim = cfg.rope_dim
    freqs = 1.0 / (float(cfg.rope["rope_theta"]) ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    factor = float(cfg.rope.get("factor", 8.0))
    low, high = float(cfg.rope.get("low_freq_factor", 1.0)), float(cfg.rope.get("high_freq_factor", 4.0))
    old_ctx = float(cfg.rope.get("original_max_position_embeddings", 8192))
    wavelen = 2 * math.pi / freqs
    smooth = (old_ctx / wavelen - low) / (high - low)
    blended = 1.0 / ((1 - smooth) / factor + smooth)
    out = np.where(wavelen < old_ctx / high, 1.0, np.where(wavelen > old_ctx / low, factor, blended))
    return out.astype(np.float32)


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise ConversionError(f"{folder} is not a Hugging Face model folder: it has no config.json")
    return read_json(path)
