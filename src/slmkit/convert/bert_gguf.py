"""Convert a sentence-transformers BERT model (safetensors + WordPiece vocab) to GGUF.

The result is what llama.cpp's ``bert`` architecture expects: mean pooling, non-causal
attention, and the WordPiece vocabulary rewritten the way llama.cpp's tokenizer reads it
(continuation pieces ``##x`` become ``x``, word-initial pieces get the U+2581 prefix, special
tokens stay as they are).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.convert.gguf_tensors import add_tensor, file_type, folder_tensors, read_json, read_safetensors
from slmkit.errors import ConversionError

__all__ = ["BertConfig", "convert_sentence_transformer", "read_safetensors", "wordpiece_vocab", "write_bert_gguf"]

# llama.cpp pooling types written to ``bert.pooling_type``
POOLING_MEAN = 1
POOLING_CLS = 2
WORD_PREFIX = "\u2581"
MAX_TOKENS_KEY = "slmkit.embedding.max_tokens"
# kept in F32 even in an F16 file: ggml aborts on F16 token-type / position embeddings
_F32_ONLY = ("token_types", "position_embd", "token_embd_norm")


@dataclass(frozen=True)
class BertConfig:
    hidden: int
    layers: int
    heads: int
    ffn: int
    max_positions: int
    eps: float
    type_vocab: int
    vocab_size: int
    max_seq_length: int
    pooling: int

    @classmethod
    def load(cls, folder: Path) -> BertConfig:
        cfg = read_json(folder / "config.json")
        if cfg.get("model_type") != "bert":
            raise ConversionError(f"{folder} is not a BERT model (model_type={cfg.get('model_type')!r})")
        st = read_json(folder / "sentence_bert_config.json", required=False)
        pooling_cfg = read_json(folder / "1_Pooling" / "config.json", required=False)
        pooling = POOLING_CLS if pooling_cfg.get("pooling_mode_cls_token") else POOLING_MEAN
        max_pos = int(cfg["max_position_embeddings"])
        return cls(hidden=int(cfg["hidden_size"]), layers=int(cfg["num_hidden_layers"]),
                   heads=int(cfg["num_attention_heads"]), ffn=int(cfg["intermediate_size"]),
                   max_positions=max_pos, eps=float(cfg.get("layer_norm_eps", 1e-12)),
                   type_vocab=int(cfg.get("type_vocab_size", 2)), vocab_size=int(cfg["vocab_size"]),
                   max_seq_length=min(int(st.get("max_seq_length", max_pos)), max_pos), pooling=pooling)


def wordpiece_vocab(folder: Path) -> tuple[list[str], list[int]]:
    """Tokens rewritten for llama.cpp's WordPiece tokenizer, and their token types."""
    import gguf

    lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    tokens: list[str] = []
    types: list[int] = []
    for piece in lines:
        if piece.startswith("[") and piece.endswith("]"):
            tokens.append(piece)
            types.append(int(gguf.TokenType.CONTROL))
        elif piece.startswith("##"):
            tokens.append(piece[2:])
            types.append(int(gguf.TokenType.NORMAL))
        else:
            tokens.append(WORD_PREFIX + piece)
            types.append(int(gguf.TokenType.NORMAL))
    return tokens, types


def convert_sentence_transformer(folder: Path, dest: Path, *, name: str, f16: bool = True) -> Path:
    """Write ``dest`` (atomically: a temp file renamed into place) from a model folder."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_bert_gguf(folder, tmp, name=name, outtype="f16" if f16 else "f32")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def write_bert_gguf(folder: Path, out: Path, *, name: str, outtype: str = "f16") -> int:
    """Write ``out`` (the caller's temporary name) from a BERT folder; returns the tensor count."""
    import gguf

    config = BertConfig.load(folder)
    if not (folder / "vocab.txt").is_file():
        raise ConversionError(f"{folder} has no vocab.txt (a WordPiece vocabulary)")
    tokens, types = wordpiece_vocab(folder)
    if len(tokens) != config.vocab_size:
        raise ConversionError(f"vocab.txt has {len(tokens)} tokens, config says {config.vocab_size}")
    writer = gguf.GGUFWriter(str(out), "bert")
    try:
        _write_metadata(writer, config, name, tokens, types, outtype)
        gguf.SpecialVocab(folder, load_merges=False, n_vocab=len(tokens)).add_to_gguf(writer, quiet=True)
        count = _write_tensors(writer, folder, config, outtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return count


def _write_metadata(writer: Any, config: BertConfig, name: str, tokens: list[str], types: list[int],
                    outtype: str) -> None:
    import gguf

    writer.add_name(name)
    writer.add_file_type(file_type(outtype))
    writer.add_context_length(config.max_positions)
    writer.add_embedding_length(config.hidden)
    writer.add_feed_forward_length(config.ffn)
    writer.add_block_count(config.layers)
    writer.add_head_count(config.heads)
    writer.add_layer_norm_eps(config.eps)
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType(config.pooling))
    writer.add_uint32(MAX_TOKENS_KEY, config.max_seq_length)
    writer.add_tokenizer_model("bert")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(config.type_vocab)


def _write_tensors(writer: Any, folder: Path, config: BertConfig, outtype: str) -> int:
    import gguf

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, config.layers)
    count = 0
    for hf_name, array in folder_tensors(folder):
        if hf_name.endswith("position_ids") or hf_name.startswith(("pooler.", "bert.pooler.")):
            continue
        new_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ConversionError(f"cannot map tensor {hf_name} to a GGUF name")
        keep_f32 = any(part in new_name for part in _F32_ONLY)
        add_tensor(writer, new_name, np.asarray(array, dtype=np.float32), outtype, keep_f32=keep_f32)
        count += 1
    return count
