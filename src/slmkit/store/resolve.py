"""Turn the name a user gives (`slm serve --model X`, a request's `model`) into a file."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slmkit.errors import ModelNotFound
from slmkit.store.embedded import ALIASES, EMBEDDED

_NAME = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,127}$")


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # the name it is served under
    path: Path
    format: str = "gguf"


def resolve_model(spec: str) -> ResolvedModel:
    """Resolve an embedded model name or a path to a GGUF file."""
    key = ALIASES.get(spec.lower(), spec.lower())
    if key in EMBEDDED:
        return ResolvedModel(name=key, path=EMBEDDED[key].path())
    path = Path(spec).expanduser()
    if spec.endswith(".gguf") or path.is_file():
        if not path.is_file():
            raise ModelNotFound(f"model file not found: {spec}")
        return ResolvedModel(name=served_name(path.stem), path=path.resolve())
    raise ModelNotFound(f"model '{spec}' not found", param="model")


def served_name(stem: str) -> str:
    """A file name made into a model name clients can send."""
    name = re.sub(r"[^a-z0-9._:-]+", "-", stem.lower()).strip("-.") or "model"
    return name if _NAME.match(name) else name[:128]
