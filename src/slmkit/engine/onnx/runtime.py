"""The onnxruntime-genai import, with the one-line install hint when it is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slmkit.errors import ModelLoadError
from slmkit.install import install_command

INSTALL_HINT = "serving ONNX models needs onnxruntime-genai: " + install_command("onnx")
GENAI_CONFIG = "genai_config.json"


def genai() -> Any:
    """The ``onnxruntime_genai`` module, or a ModelLoadError naming the extra to install."""
    try:
        import onnxruntime_genai as og
    except ImportError as exc:
        raise ModelLoadError(INSTALL_HINT) from exc
    return og


def read_genai_config(folder: Path) -> dict[str, Any]:
    """The folder's genai_config.json; a clear error when it is missing or unreadable."""
    path = folder / GENAI_CONFIG
    if not path.is_file():
        raise ModelLoadError(f"{folder} is not an ONNX Runtime GenAI model: it has no {GENAI_CONFIG} "
                             "(convert one with `slm convert SRC --to onnx`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or "model" not in data:
        raise ModelLoadError(f"{path} has no 'model' section")
    return data


def set_threads(config: Any, threads: int) -> None:
    """Cap the CPU threads of an ``og.Config``'s sessions, as the llama.cpp engine does."""
    overlay = getattr(config, "overlay", None)
    if overlay is not None:
        overlay(json.dumps({"model": {"decoder": {"session_options": {"intra_op_num_threads": threads}}}}))
