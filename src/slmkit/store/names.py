"""Store names: ``name[:tag]``, checked before anything touches the filesystem."""

from __future__ import annotations

import re
from dataclasses import dataclass

from slmkit.errors import InvalidName

_PART = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
DEFAULT_TAG = "latest"


@dataclass(frozen=True)
class ModelRef:
    name: str
    tag: str = DEFAULT_TAG
    explicit_tag: bool = False

    def __str__(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def short(self) -> str:
        """``name`` alone when the tag is the default, else ``name:tag``."""
        return self.name if self.tag == DEFAULT_TAG else str(self)


def _check(part: str, what: str, spec: str) -> str:
    if not _PART.match(part) or ".." in part:
        raise InvalidName(
            f"invalid model {what} in '{spec}': use lowercase letters, digits, '.', '_' and '-' "
            "(at most 80 characters, starting with a letter or digit; no '/' or '..')", param="model")
    return part


def parse_ref(spec: str) -> ModelRef:
    """``Qwen3-0.6B:Q4_K_M`` -> ModelRef('qwen3-0.6b', 'q4_k_m'); InvalidName for anything else."""
    text = spec.strip().lower()
    name, sep, tag = text.partition(":")
    _check(name, "name", spec)
    if sep:
        return ModelRef(name, _check(tag, "tag", spec), explicit_tag=True)
    return ModelRef(name)


def is_valid(spec: str) -> bool:
    try:
        parse_ref(spec)
    except InvalidName:
        return False
    return True
