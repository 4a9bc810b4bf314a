"""The mlx / mlx-lm imports with the one-line install hint, and what marks an MLX model folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from slmkit.errors import ModelLoadError

INSTALL_HINT = "MLX models need mlx and mlx-lm: pip install 'slmkit[mlx]'"


def missing_modules() -> list[str]:
    """The MLX modules that are not installed (empty when the extra is)."""
    return [m for m in ("mlx", "mlx_lm") if importlib.util.find_spec(m) is None]


def mlx_lm() -> Any:
    """The ``mlx_lm`` module, or a ModelLoadError naming the extra to install."""
    missing = missing_modules()
    if missing:
        raise ModelLoadError(f"{INSTALL_HINT} (missing: {', '.join(missing)})")
    import mlx_lm as module

    return module


def mx() -> Any:
    """``mlx.core`` (after ``mlx_lm()`` has checked that it is installed)."""
    import mlx.core as core

    return core


def is_mlx_folder(path: Path) -> bool:
    """A folder mlx-lm loads: config.json and safetensors weights, and not an ONNX model."""
    return (path.is_dir() and (path / "config.json").is_file() and not (path / "genai_config.json").is_file()
            and any(path.glob("*.safetensors")))


def read_mlx_config(folder: Path) -> dict[str, Any]:
    """The folder's config.json; a clear error when the folder is not an MLX model."""
    if not is_mlx_folder(folder):
        raise ModelLoadError(f"{folder} is not an MLX model: it needs config.json and *.safetensors "
                             "(convert one with `slm convert SRC --to mlx`)")
    path = folder / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or "model_type" not in data:
        raise ModelLoadError(f"{path} has no model_type")
    return data


def context_of(config: dict[str, Any]) -> int:
    """The trained context length in a Hugging Face config (0 when it does not say)."""
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else {}
    for key in ("max_position_embeddings", "max_sequence_length", "n_positions", "seq_length"):
        value = config.get(key) or text.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return 0


def fit_to_device(model: Any) -> str:
    """Compute in float32 on a CPU (MLX's CPU kernels have no fast float16 path: a 4-bit matmul
    with float16 activations ran ~100x slower than with float32 on this project's x86 machine);
    keep the converted dtype on a GPU (Metal). Returns the device's name."""
    core = mx()
    device = core.default_device()
    if device.type == core.cpu:
        from mlx.utils import tree_map

        half = (core.float16, core.bfloat16)
        model.update(tree_map(lambda v: v.astype(core.float32) if v.dtype in half else v, model.parameters()))
    core.eval(model.parameters())  # now, on this thread's stream (MLX streams belong to their thread)
    return str(device)


def package_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"
