"""The public surface of ``import slmkit`` is pinned: changing it must change this test."""

from __future__ import annotations

import subprocess
import sys

import slmkit

PUBLIC = [
    "Choice", "Chunk", "Completion", "ContextLengthExceeded", "EngineError", "InvalidRequest", "Model",
    "ModelClosed", "ModelLoadError", "ModelNotFound", "OutputInvalid", "Overloaded", "Server", "SlmkitError",
    "ToolCall", "Usage", "__version__", "load", "serve",
]
MODEL_METHODS = {"achat", "acomplete", "aembed", "aparse", "astream", "chat", "chat_template", "close", "closed",
                 "complete", "context_length", "detokenize", "embed", "info", "kind", "name", "parse", "profile",
                 "stats", "stream", "tokenize"}


def test_all_is_pinned_and_resolves() -> None:
    assert slmkit.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(slmkit, name) is not None
    assert issubclass(slmkit.ModelClosed, slmkit.SlmkitError) and issubclass(slmkit.OutputInvalid, slmkit.SlmkitError)


def test_model_methods_are_pinned() -> None:
    assert {n for n in dir(slmkit.Model) if not n.startswith("_")} == MODEL_METHODS
    assert {n for n in dir(slmkit.Server) if not n.startswith("_")} == {
        "base_url", "running", "start", "stop", "url"}


def test_every_public_callable_is_documented() -> None:
    for name in ("load", "serve"):
        assert (getattr(slmkit, name).__doc__ or "").strip()
    for name in MODEL_METHODS - {"closed", "aembed", "acomplete", "aparse", "detokenize"}:
        assert (getattr(slmkit.Model, name).__doc__ or "").strip(), name


def test_import_is_cheap() -> None:
    """``import slmkit`` (the CLI's first step) does not load llama.cpp until the API is used."""
    code = "import sys, slmkit; print('llama_cpp' in sys.modules); slmkit.load; print('llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
