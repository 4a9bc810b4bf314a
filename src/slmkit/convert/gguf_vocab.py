"""The tokenizer of a Hugging Face folder (``tokenizer.json``) as GGUF metadata.

Byte-level BPE (GPT-2 style: SmolLM, Llama 3, Qwen2 ...) is written as llama.cpp's ``gpt2``
tokenizer: the byte-level token strings, the merges, token types (CONTROL for special added
tokens, USER_DEFINED for other added tokens), and ``tokenizer.ggml.pre``, the name llama.cpp
uses to pick the regular expressions that split text before BPE. llama.cpp's converter finds
that name by hashing the ids of a probe text against a table of known models; here it is read
from the ``pre_tokenizer`` the folder declares, so any folder with one of the known shapes
converts, and an unknown shape is refused rather than guessed (a wrong pre-tokenizer silently
tokenizes numbers and whitespace differently).

Special token ids, the add-BOS/EOS flags and the chat template come from ``tokenizer_config.json``
/ ``config.json`` / ``chat_template.jinja`` through ``gguf.SpecialVocab``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.errors import ConversionError

# The Split regexes of the byte-level BPE tokenizers we recognise, as tokenizer.json spells them.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
               r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# pre-tokenizer shape -> llama.cpp's tokenizer.ggml.pre
PRE_TOKENIZERS = {
    "ByteLevel(regex)": "gpt-2",
    "Digits(individual)+ByteLevel(regex)": "smollm",
    "Split(llama3)+ByteLevel": "llama-bpe",
    "Split(qwen2)+ByteLevel": "qwen2",
}
_SPLITS = {LLAMA3_SPLIT: "llama3", QWEN2_SPLIT: "qwen2"}


@dataclass(frozen=True)
class Vocab:
    tokens: list[str]
    types: list[int]
    pre: str  # tokenizer.ggml.pre


def read_tokenizer_json(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer.json"
    if not path.is_file():
        sentencepiece = (folder / "tokenizer.model").is_file()
        hint = " (a SentencePiece tokenizer.model alone is not supported)" if sentencepiece else ""
        raise ConversionError(f"{folder} has no tokenizer.json{hint}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise ConversionError(f"{path} is not a tokenizers file (no 'model')")
    return data


def pre_tokenizer_name(data: dict[str, Any]) -> str:
    """llama.cpp's name for the way this tokenizer splits text, or a ConversionError."""
    pre = data.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    shape = "+".join(_describe(step) for step in steps if step)
    if shape in PRE_TOKENIZERS:
        return PRE_TOKENIZERS[shape]
    known = "; ".join(f"{k} ({v})" for k, v in PRE_TOKENIZERS.items())
    raise ConversionError(f"unknown byte-level BPE pre-tokenizer {shape or 'none'}; supported: {known}")


def _describe(step: dict[str, Any]) -> str:
    kind = str(step.get("type"))
    if kind == "ByteLevel":
        return "ByteLevel(regex)" if step.get("use_regex", True) else "ByteLevel"
    if kind == "Digits":
        return "Digits(individual)" if step.get("individual_digits") else "Digits"
    if kind == "Split":
        regex = str((step.get("pattern") or {}).get("Regex"))
        return f"Split({_SPLITS.get(regex, 'custom regex')})"
    return kind


def bpe_vocab(folder: Path, vocab_size: int) -> Vocab:
    """Tokens and types for llama.cpp's ``gpt2`` (byte-level BPE) tokenizer, padded to ``vocab_size``
    (the embedding rows) with unused ``[PADn]`` tokens as llama.cpp's converter does."""
    import gguf

    data = read_tokenizer_json(folder)
    model = data["model"]
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        kind = "SentencePiece-style BPE (byte_fallback)" if model.get("byte_fallback") else str(model.get("type"))
        raise ConversionError(f"the tokenizer is {kind}; only byte-level BPE tokenizers are supported "
                              "(GPT-2, SmolLM, Llama 3, Qwen2 style)")
    pre = pre_tokenizer_name(data)
    by_id: dict[int, tuple[str, int]] = {int(i): (t, int(gguf.TokenType.NORMAL)) for t, i in model["vocab"].items()}
    for added in data.get("added_tokens", []):
        content, special = str(added["content"]), bool(added.get("special"))
        control = special or _looks_special(content)
        token_type = gguf.TokenType.CONTROL if control else gguf.TokenType.USER_DEFINED
        by_id[int(added["id"])] = (content, int(token_type))
    if by_id and max(by_id) >= vocab_size:
        raise ConversionError(f"the tokenizer has token id {max(by_id)}, beyond the model's vocab_size {vocab_size}")
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        token, token_type_id = by_id.get(i, (f"[PAD{i}]", int(gguf.TokenType.UNUSED)))
        tokens.append(token)
        types.append(token_type_id)
    return Vocab(tokens=tokens, types=types, pre=pre)


def _looks_special(token: str) -> bool:
    """Added tokens some tokenizers leave unmarked that are control tokens all the same."""
    return (token.startswith("<|") and token.endswith("|>")) or token in ("<pad>", "<mask>")


def write_bpe_vocab(writer: Any, folder: Path, vocab: Vocab) -> None:
    """Tokens, merges, special ids and flags, and the chat template."""
    import gguf

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(vocab.pre)
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.types)
    config = _read_optional_json(folder / "tokenizer_config.json")
    if isinstance(config.get("add_prefix_space"), bool):
        writer.add_add_space_prefix(config["add_prefix_space"])
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(vocab.tokens))
    if not special.merges:
        raise ConversionError(f"{folder / 'tokenizer.json'} lists no BPE merges")
    # neither tokenizer_config.json nor the post-processor adds a BOS: Hugging Face adds none, and
    # llama.cpp must be told so (for some pre-tokenizers it adds one by default)
    special.add_special_token.setdefault("bos", False)
    special.add_to_gguf(writer, quiet=True)


def _read_optional_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}
