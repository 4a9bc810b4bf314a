"""What a Hugging Face style model folder says about its tokenizer and chat template (shared by
the engines that serve folders: ONNX Runtime GenAI and MLX)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slmkit.engine.llamacpp.template import ChatTemplate


def tokenizer_config(folder: Path) -> dict[str, Any]:
    path = folder / "tokenizer_config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        data = {}
    return data if isinstance(data, dict) else {}


def chat_template_source(folder: Path, tokenizer_cfg: dict[str, Any]) -> str | None:
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    template = tokenizer_cfg.get("chat_template")
    return template if isinstance(template, str) else None


def token_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return value if isinstance(value, str) else ""


def folder_chat_template(folder: Path) -> ChatTemplate:
    """The folder's chat template (ChatML when it has none) with its BOS and EOS texts."""
    cfg = tokenizer_config(folder)
    return ChatTemplate(chat_template_source(folder, cfg), bos_token=token_text(cfg.get("bos_token")),
                        eos_token=token_text(cfg.get("eos_token")))
