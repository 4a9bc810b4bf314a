"""The catalog of known SLMs, read from ``data/catalog.json`` (validated by its schema in tests)."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any, Literal

from slmkit.errors import ModelNotFound

SizeClass = Literal["micro", "small", "medium"]
TASKS = ("chat", "code", "embed")
CLASS_BOUNDS: dict[str, tuple[float, float]] = {
    "micro": (100e6, 1.5e9),
    "small": (1.5e9, 14e9),
    "medium": (14e9, 34e9),
}


def size_class(parameters: int) -> SizeClass:
    """micro below 1.5B, small from 1.5B to 13.9B, medium from 14B (to ~30B)."""
    if parameters < CLASS_BOUNDS["micro"][1]:
        return "micro"
    if parameters < CLASS_BOUNDS["small"][1]:
        return "small"
    return "medium"


@dataclass(frozen=True)
class Architecture:
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    vocab_size: int
    max_context: int


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    family: str
    parameters: int
    size_class: SizeClass
    architecture: Architecture
    license: str
    tasks: tuple[str, ...]
    repo: str
    files: dict[str, str]
    description: str = ""
    aliases: tuple[str, ...] = ()
    runtime: str = "llama.cpp"
    active_parameters: int | None = None
    mlx: tuple[str, ...] = ()  # `slm convert --to mlx` quants known to work (converted, served, scored)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def quants(self) -> list[str]:
        return list(self.files)

    @property
    def llama_cpp(self) -> bool:
        """Whether mainline llama.cpp (our engine) runs its GGUF."""
        return self.runtime == "llama.cpp"

    def file_for(self, quant: str | None) -> tuple[str, str]:
        """The (quant, file name) to pull: the given quant, or q4_k_m, or the first listed."""
        if quant is None:
            quant = "q4_k_m" if "q4_k_m" in self.files else next(iter(self.files))
        key = quant.lower()
        if key not in self.files:
            raise ModelNotFound(f"{self.name} has no '{quant}' build; available: {', '.join(self.files)}",
                                param="model")
        return key, self.files[key]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CatalogEntry:
        return cls(
            name=data["name"], family=data["family"], parameters=data["parameters"], size_class=data["class"],
            architecture=Architecture(**data["architecture"]), license=data["license"], tasks=tuple(data["tasks"]),
            repo=data["gguf"]["repo"], files=dict(data["gguf"]["files"]), description=data.get("description", ""),
            aliases=tuple(data.get("aliases", ())), runtime=data.get("runtime", "llama.cpp"),
            active_parameters=data.get("active_parameters"), mlx=tuple(data.get("mlx", {}).get("conversions", ())),
            raw=data,
        )


def catalog_text() -> str:
    return files("slmkit.catalog").joinpath("data/catalog.json").read_text(encoding="utf-8")


def schema_text() -> str:
    return files("slmkit.catalog").joinpath("data/catalog.schema.json").read_text(encoding="utf-8")


@cache
def load_catalog() -> tuple[CatalogEntry, ...]:
    return tuple(CatalogEntry.from_dict(item) for item in json.loads(catalog_text())["models"])


def entries(size: str | None = None, task: str | None = None) -> list[CatalogEntry]:
    return [e for e in load_catalog() if (size is None or e.size_class == size) and (task is None or task in e.tasks)]


def lookup(name: str) -> CatalogEntry | None:
    key = name.lower()
    for entry in load_catalog():
        if key == entry.name or key in entry.aliases:
            return entry
    return None


def find(name: str) -> CatalogEntry:
    """The catalog entry called ``name`` (or an alias); ModelNotFound naming the nearest names."""
    entry = lookup(name)
    if entry is not None:
        return entry
    raise ModelNotFound(f"'{name}' is not in the catalog{suggest(name)}", param="model")


def suggest(name: str) -> str:
    names = [e.name for e in load_catalog()] + [a for e in load_catalog() for a in e.aliases]
    close = difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else "; see `slm models catalog`"
