"""``slm pull``: get a model into the store from the Hub, a local file or a PyPI package."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.catalog.models import lookup, suggest
from slmkit.errors import ModelNotFound, StoreError
from slmkit.store.aliases import alias_of, normalize
from slmkit.store.embedded import EMBEDDED, EmbeddedModel
from slmkit.store.modelfile import Profile
from slmkit.store.names import parse_ref
from slmkit.store.store import CHUNK, Manifest, Store

_HUB = re.compile(r"^(?:https?://)?(?:hf\.co|huggingface\.co)/([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)(?::(.+))?$")


@dataclass(frozen=True)
class PullEvent:
    """One progress report, in the shape Ollama's /api/pull streams."""

    status: str
    digest: str | None = None
    total: int | None = None
    completed: int | None = None


Reporter = Callable[[PullEvent], None]


def _quiet(_event: PullEvent) -> None:
    return None


def pull(store: Store, spec: str, *, name: str | None = None, report: Reporter = _quiet,
         allow_paths: bool = True) -> Manifest:
    """Pull ``spec``: a path, an embedded model, ``hf.co/OWNER/REPO[:QUANT|FILE]``, ``catalog-name[:quant]``
    or one of the catalog's aliases (``qwen3:4b``, ``qwen3:4b-q8_0``: ``store.aliases``).
    Over HTTP (``allow_paths=False``) a path is just another unknown name."""
    spec = spec.strip()
    if not spec:
        raise StoreError("pull needs a model name", param="model")
    match = _HUB.match(spec)
    if match:
        repo, selector = match.group(1), match.group(2)
        default = repo.split("/")[-1].lower().removesuffix("-gguf")
        return _pull_hub(store, repo, selector, name, default, report)
    path = Path(spec).expanduser()
    if allow_paths and (spec.endswith(".gguf") or os.sep in spec or path.is_file()):
        return pull_file(store, path, name=name, report=report)
    alias = alias_of(spec)  # an Ollama library name (qwen3:4b) is saved under that name, as Ollama does
    name = name or (normalize(spec) if alias is not None else None)
    base, _, tag = (alias or spec.lower()).partition(":")
    embedded = EMBEDDED.get(base)
    if embedded is not None and tag in ("", "latest"):
        return pull_package(store, embedded, name=name, report=report)
    entry = lookup(base)
    if entry is None:
        raise ModelNotFound(f"'{spec}' is not a catalog model, an embedded model, hf.co/OWNER/REPO or a file"
                            f"{suggest(base)}", param="model")
    if not entry.llama_cpp:
        report(PullEvent(f"note: {entry.name} needs {entry.runtime} to run; slmkit stores it but cannot serve it"))
    quant, filename = entry.file_for(tag or None)
    return _pull_hub(store, entry.repo, filename, name, f"{entry.name}:{quant}", report, license=entry.license)


def _pull_hub(store: Store, repo: str, selector: str | None, name: str | None, default: str,
              report: Reporter, license: str | None = None) -> Manifest:
    from slmkit.store import hub  # huggingface_hub takes a while to import

    ref = parse_ref(name or (default if ":" in default else f"{default}:{(selector or 'q4_k_m').lower()}"))
    if hub.offline():
        existing = store.find(str(ref))
        if existing is not None and store.has_blob(existing.digest):
            report(PullEvent("offline: using the copy already in the store"))
            return existing
    report(PullEvent("pulling manifest"))
    target = hub.pick_file(repo, selector)
    if name is None and ":" not in default:  # tag it with the quantization actually chosen
        ref = parse_ref(f"{default}:{hub.quant_of(target.filename)}")
    digest_hint = f"sha256:{target.sha256}" if target.sha256 else None
    status = f"pulling {(target.sha256 or target.key)[:12]}"

    def progress(done: int, total: int) -> None:
        report(PullEvent(status, digest=digest_hint, total=total, completed=done))

    report(PullEvent(status, digest=digest_hint, total=target.size, completed=0))
    digest = hub.download(store, target, progress)
    report(PullEvent(status, digest=digest, total=target.size, completed=target.size))
    report(PullEvent("verifying sha256 digest"))
    source = {"kind": "hub", "repo": repo, "file": target.filename, "revision": target.revision,
              "endpoint": hub.endpoint(), "sha256": "listed" if target.sha256 else "computed"}
    profile = Profile(license=license) if license else None
    return _write(store, ref.name, ref.tag, digest, target.size, target.filename, source, profile, report)


def pull_file(store: Store, path: Path, *, name: str | None = None, report: Reporter = _quiet) -> Manifest:
    if not path.is_file():
        raise ModelNotFound(f"model file not found: {path}", param="model")
    from slmkit.store.gguf_meta import read_gguf
    from slmkit.store.resolve import served_name

    read_gguf(path)  # a corrupt file is refused before it is copied
    ref = parse_ref(name or served_name(path.stem))
    size = path.stat().st_size
    status = f"copying {path.name}"
    digest, size = store.add_file(path, lambda done: report(PullEvent(status, total=size, completed=done)))
    source = {"kind": "file", "path": str(path.resolve())}
    return _write(store, ref.name, ref.tag, digest, size, path.name, source, None, report)


def pull_package(store: Store, model: EmbeddedModel, *, name: str | None = None,
                 report: Reporter = _quiet) -> Manifest:
    """Register an embedded model: the file as is, or its parts joined and checked against the sha256."""
    ref = parse_ref(name or model.name)
    profile = Profile.from_dict({**model.profile, "license": model.license}) if model.profile or model.license \
        else None
    source: dict[str, Any] = {"kind": "package", "package": model.package}
    if not model.split:
        path = model.path()
        digest, size = store.add_file(path, lambda d: report(PullEvent("copying", total=path.stat().st_size,
                                                                         completed=d)))
        return _write(store, ref.name, ref.tag, digest, size, model.filename, source, profile, report)
    parts = model.part_paths()
    total = sum(p.stat().st_size for p in parts)
    digest = f"sha256:{model.sha256}"
    with store.lock(model.sha256 or model.name):
        if not store.has_blob(digest):
            _join(store, parts, model, total, report)
    source["parts"] = [pkg for pkg, _ in model.parts]
    return _write(store, ref.name, ref.tag, digest, total, model.filename, source, profile, report)


def _join(store: Store, parts: list[Path], model: EmbeddedModel, total: int, report: Reporter) -> None:
    temp = store.temp_path(".gguf")
    sha = hashlib.sha256()
    done = 0
    status = f"assembling {model.filename} from {len(parts)} packages"
    try:
        with open(temp, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while block := fh.read(CHUNK):
                        out.write(block)
                        sha.update(block)
                        done += len(block)
                        report(PullEvent(status, total=total, completed=done))
            out.flush()
            os.fsync(out.fileno())
        if model.sha256 and sha.hexdigest() != model.sha256:
            raise StoreError(f"checksum mismatch assembling {model.filename}: expected {model.sha256}, "
                             f"got {sha.hexdigest()}; reinstall the packages", code="checksum_mismatch")
        store.commit_blob(temp, f"sha256:{sha.hexdigest()}")
    finally:
        temp.unlink(missing_ok=True)


def _write(store: Store, name: str, tag: str, digest: str, size: int, file_name: str, source: dict[str, Any],
           profile: Profile | None, report: Reporter) -> Manifest:
    report(PullEvent("writing manifest"))
    manifest = Manifest(name=name, tag=tag, digest=digest, size=size, file_name=file_name, source=source,
                        profile=profile)
    store.write_manifest(manifest)
    report(PullEvent("success"))
    return manifest
