"""The one place that turns a model file into an engine."""

from __future__ import annotations

from pathlib import Path

from slmkit.engine.base import Embedder, Engine
from slmkit.settings import EngineSettings


def open_engine(name: str, path: Path, fmt: str, settings: EngineSettings, *,
                embedding: bool = False) -> Engine | Embedder:
    """Load ``path`` (a GGUF file, an ONNX or an MLX folder) with the engine its format needs:
    llama.cpp for GGUF (an embedder for embedding models), onnxruntime-genai for ONNX, mlx-lm for MLX."""
    if fmt == "onnx":
        from slmkit.engine.onnx.engine import OnnxEngine

        return OnnxEngine(name, path, settings)
    if fmt == "mlx":
        from slmkit.engine.mlx.engine import MlxEngine

        return MlxEngine(name, path, settings)
    if embedding:
        from slmkit.engine.llamacpp.embedding import LlamaCppEmbedder

        return LlamaCppEmbedder(name, path, settings)
    from slmkit.engine.llamacpp.engine import LlamaCppEngine

    return LlamaCppEngine(name, path, settings)


def open_chat_engine(name: str, path: Path, fmt: str, settings: EngineSettings) -> Engine:
    """A text-generating engine (for the CLI's in-process commands)."""
    engine = open_engine(name, path, fmt, settings)
    assert isinstance(engine, Engine)
    return engine
