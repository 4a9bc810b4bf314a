"""slmkit: take a small language model from "I picked a model" to "it serves real traffic"."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("slmkit")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

__all__ = ["__version__"]
