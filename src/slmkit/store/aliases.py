"""The one place where a name a client sends becomes the name a model is known by.

Every door reaches it: the OpenAI and Ollama routes through the server's registry, the Python
API, ``slm run`` and ``slm serve`` through ``resolve_model``, ``slm pull`` / ``/api/pull``,
``slm models estimate`` and a Modelfile's ``FROM``.

* Case and surrounding spaces do not matter, and ``:latest`` is the same as no tag (Ollama's rule):
  ``smollm2-135m-instruct:latest`` is ``smollm2-135m-instruct``.
* Ollama library names resolve to their model, generated from the catalog's own aliases:
  ``qwen3:4b`` -> ``qwen3-4b``, ``llama3.2`` -> ``llama-3.2-3b``, and ``family:size-quant`` names one
  build (``qwen3:4b-q8_0`` -> ``qwen3-4b:q8_0``). A catalog model that ships embedded resolves to
  the embedded one (``smollm2:135m`` -> ``smollm2-135m-instruct``). The embedded models add their
  own (``all-minilm``).
* A store model saved under the name as given wins over the alias: ``slm pull qwen3:4b`` saves
  ``qwen3:4b`` (as Ollama does), and ``slm create mistral`` makes ``mistral`` yours.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from slmkit.errors import StoreError

LATEST = ":latest"


def normalize(spec: str) -> str:
    """Lowercase, trimmed, without ``:latest``."""
    return spec.strip().lower().removesuffix(LATEST)


def tagged(name: str) -> str:
    """The Ollama form of a served name: ``name:tag``, ``:latest`` when it has no tag."""
    return name if ":" in name else f"{name}{LATEST}"


@cache
def alias_table() -> dict[str, str]:
    """Every alias (normalized) -> the model name it stands for."""
    from slmkit.catalog.models import load_catalog
    from slmkit.store.embedded import ALIASES, EMBEDDED

    table: dict[str, str] = {}
    for entry in load_catalog():
        target = next((n for n in (entry.name, *entry.aliases) if n in EMBEDDED), entry.name)
        for alias in entry.aliases:
            if normalize(alias) != target:
                table.setdefault(normalize(alias), target)
            if ":" in alias:  # an Ollama library tag: family:size-quant names one build
                for quant in entry.files:
                    table.setdefault(f"{normalize(alias)}-{quant}", f"{entry.name}:{quant}")
    table.update({normalize(alias): target for alias, target in ALIASES.items()})
    return table


def alias_of(spec: str) -> str | None:
    """The model an alias names, without looking at the store; None when ``spec`` is no alias."""
    return alias_table().get(normalize(spec))


def expand(spec: str) -> str:
    """``spec`` normalized, with an alias replaced by its model (no store lookup)."""
    key = normalize(spec)
    return alias_table().get(key, key)


def canonical_name(spec: str, home: Path | None = None) -> str:
    """The name ``spec`` is served under: normalized, an alias replaced by its model unless the
    store at ``home`` holds a model under the alias itself."""
    key = normalize(spec)
    target = alias_table().get(key)
    if target is None or (home is not None and _stored(key, home)):
        return key
    return target


def _stored(key: str, home: Path) -> bool:
    from slmkit.store.names import is_valid
    from slmkit.store.store import Store

    if not is_valid(key):
        return False
    try:
        return Store(home).find(key, only_tag=False) is not None
    except StoreError:  # a damaged manifest under that name: it is the user's; loading says what is wrong
        return True
