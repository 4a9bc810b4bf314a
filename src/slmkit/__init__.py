"""slmkit: take a small language model from "I picked a model" to "it serves real traffic".

The Python API (see docs/python-api.md)::

    import slmkit

    with slmkit.load() as model:            # the embedded SmolLM2-135M-Instruct
        print(model.chat("Say hello").text)

    with slmkit.serve(port=0) as server:    # OpenAI + Ollama APIs in a background thread
        print(server.base_url)

The names below load lazily, so ``import slmkit`` stays cheap for the CLI.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("slmkit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

if TYPE_CHECKING:
    from slmkit.api import Choice, Chunk, Completion, Model, Server, ToolCall, Usage, load, serve
    from slmkit.errors import (
        ContextLengthExceeded,
        EngineError,
        InvalidRequest,
        ModelClosed,
        ModelLoadError,
        ModelNotFound,
        OutputInvalid,
        Overloaded,
        SlmkitError,
    )

_API = {"Choice", "Chunk", "Completion", "Model", "Server", "ToolCall", "Usage", "load", "serve"}
_ERRORS = {"ContextLengthExceeded", "EngineError", "InvalidRequest", "ModelClosed", "ModelLoadError",
           "ModelNotFound", "OutputInvalid", "Overloaded", "SlmkitError"}

__all__ = [
    "Choice", "Chunk", "Completion", "ContextLengthExceeded", "EngineError", "InvalidRequest", "Model",
    "ModelClosed", "ModelLoadError", "ModelNotFound", "OutputInvalid", "Overloaded", "Server", "SlmkitError",
    "ToolCall", "Usage", "__version__", "load", "serve",
]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(import_module("slmkit.api"), name)
    if name in _ERRORS:
        return getattr(import_module("slmkit.errors"), name)
    raise AttributeError(f"module 'slmkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
