"""Turn the name a user gives (`slm serve --model X`, a request's `model`) into a file.

In order: a model in the store (pulled, copied, converted or created from a Modelfile; it may
carry a profile of serving defaults), an embedded model, a path to a GGUF file or to an ONNX
Runtime GenAI or MLX folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from slmkit.errors import ModelNotFound
from slmkit.store.aliases import canonical_name, expand, normalize
from slmkit.store.embedded import EMBEDDED
from slmkit.store.modelfile import Profile
from slmkit.store.names import ModelRef, is_valid

_NAME = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,127}$")


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # the name it is served under
    path: Path
    format: str = "gguf"
    profile: Profile | None = None  # Modelfile defaults (system, template, parameters) to apply
    digest: str | None = None  # the store blob, when it came from the store


def default_home() -> Path:
    """The store of the loaded settings (SLM_HOME, or SLM_STORE__HOME)."""
    from slmkit.settings import load_settings

    return load_settings().store.home


def resolve_model(spec: str, home: Path | None = None, *, allow_paths: bool = True) -> ResolvedModel:
    """Resolve a store name, an embedded model name or a path to a GGUF file whose header reads.

    A corrupt or truncated file raises ``CorruptGGUF`` (a StoreError) here, not a crash at load.
    With ``allow_paths=False`` (names from HTTP requests) a name never reaches the filesystem:
    only store and embedded names resolve, and every other name gets the same ModelNotFound."""
    from slmkit.engine.mlx.runtime import read_mlx_config
    from slmkit.engine.onnx.runtime import read_genai_config
    from slmkit.store.gguf_meta import read_gguf

    resolved = _resolve(spec, home, allow_paths)
    if resolved.format == "onnx":
        read_genai_config(resolved.path)
    elif resolved.format == "mlx":
        read_mlx_config(resolved.path)
    else:
        read_gguf(resolved.path)
    return resolved


def _resolve(spec: str, home: Path | None = None, allow_paths: bool = True) -> ResolvedModel:
    key = normalize(spec)
    if is_valid(key):
        from slmkit.store.store import Store

        store = Store(home or default_home())
        key = canonical_name(key, store.home)  # tags and aliases: store/aliases.py
        manifest = store.find(key, only_tag=False)  # exact name:tag (or name:latest) first
        if manifest is None and key not in EMBEDDED:
            manifest = store.find(key)  # then a name with a single tag
        if manifest is not None:
            return ResolvedModel(name=key, path=store.model_path(manifest), format=manifest.format,
                                 profile=manifest.profile, digest=manifest.digest)
    if key in EMBEDDED:
        return ResolvedModel(name=key, path=EMBEDDED[key].path())
    if not allow_paths:
        raise not_found(spec)
    path = Path(spec).expanduser()
    if path.is_dir():  # an MLX folder, else an ONNX Runtime GenAI one (read_genai_config says when it is not)
        from slmkit.engine.mlx.runtime import is_mlx_folder

        fmt = "mlx" if is_mlx_folder(path) else "onnx"
        return ResolvedModel(name=served_name(path.name), path=path.resolve(), format=fmt)
    if spec.endswith(".gguf") or path.is_file():
        if not path.is_file():
            raise ModelNotFound(f"model file not found: {spec}")
        return ResolvedModel(name=served_name(path.stem), path=path.resolve())
    raise not_found(spec)


def not_found(spec: str) -> ModelNotFound:
    """The one answer for every name that does not resolve (it tells nothing about the filesystem)."""
    return ModelNotFound(f"model '{spec}' not found (not in the store, not embedded, not a file); "
                         "see `slm list` or pull it with `slm pull`", param="model")


def pullable(spec: str) -> bool:
    """Whether ``spec`` names a catalog model (or one of its aliases) that `slm pull` can fetch."""
    from slmkit.catalog.models import lookup

    return lookup(expand(spec).partition(":")[0]) is not None


def local_models(home: Path) -> list[str]:
    """Every model servable here without a download, by the name it is served under: the store's
    (pulled, created, copied, quantized, converted) and the installed embedded ones."""
    from slmkit.store.store import Store

    names = [ModelRef(m.name, m.tag).short for m in Store(home).list()]
    return names + [n for n, m in EMBEDDED.items() if n not in names and m.available()]


def served_name(stem: str) -> str:
    """A file name made into a model name clients can send."""
    name = re.sub(r"[^a-z0-9._:-]+", "-", stem.lower()).strip("-.") or "model"
    return name if _NAME.match(name) else name[:128]
