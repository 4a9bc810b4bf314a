"""The Python API: ``slmkit.load`` (a model in this process) and ``slmkit.serve`` (the server in a
background thread). See docs/python-api.md."""

from slmkit.api.loading import load
from slmkit.api.model import Model
from slmkit.api.results import Choice, Chunk, Completion, ToolCall, Usage
from slmkit.api.server import Server, serve

__all__ = ["Choice", "Chunk", "Completion", "Model", "Server", "ToolCall", "Usage", "load", "serve"]
