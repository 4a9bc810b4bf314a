"""The content-addressed model store under ``$SLM_HOME``.

    blobs/sha256-<hex>          model files, named by their content's sha256
    manifests/<name>/<tag>.json small JSON records: which blob, where it came from, the profile
    partial/<key>.part          downloads in progress (resumed next time)
    tmp/                        files being written; renamed into place when complete
    locks/<key>.lock            one writer per blob or manifest at a time

Every write goes to ``tmp/`` first and is renamed into place, so a final name never holds a
partial file. Several names (``slm cp``) may point at one blob; ``slm rm`` deletes a blob
when no manifest needs it any more.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmkit.errors import ModelNotFound, StoreError
from slmkit.store.modelfile import Profile
from slmkit.store.names import ModelRef, parse_ref

CHUNK = 1 << 20
Progress = Callable[[int], None]  # bytes done so far


@dataclass
class Manifest:
    name: str
    tag: str
    digest: str  # "sha256:<hex>"
    size: int
    file_name: str = ""
    format: str = "gguf"
    source: dict[str, Any] = field(default_factory=dict)
    profile: Profile | None = None
    created_at: float = field(default_factory=time.time)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "name": self.name, "tag": self.tag,
                "model": {"digest": self.digest, "size": self.size, "format": self.format,
                          "file_name": self.file_name},
                "source": self.source, "profile": self.profile.to_dict() if self.profile else None,
                "created_at": self.created_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        model = data["model"]
        profile = Profile.from_dict(data["profile"]) if data.get("profile") else None
        return cls(name=data["name"], tag=data["tag"], digest=model["digest"], size=model["size"],
                   file_name=model.get("file_name", ""), format=model.get("format", "gguf"),
                   source=data.get("source") or {}, profile=profile, created_at=data.get("created_at", 0.0))


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
            done += len(block)
            if progress:
                progress(done)
    return digest.hexdigest()


class Store:
    def __init__(self, home: Path) -> None:
        self.home = Path(home).expanduser()

    # -- layout ---------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        path = self.home / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def blob_path(self, digest: str) -> Path:
        algo, _, hexdigest = digest.partition(":")
        if algo != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
            raise StoreError(f"invalid blob digest '{digest}'")
        return self.home / "blobs" / f"sha256-{hexdigest}"

    def has_blob(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def partial_path(self, key: str) -> Path:
        return self._dir("partial") / f"{key}.part"

    def temp_path(self, suffix: str = "") -> Path:
        fd, name = tempfile.mkstemp(dir=self._dir("tmp"), suffix=suffix)
        os.close(fd)
        return Path(name)

    def _manifest_path(self, ref: ModelRef) -> Path:
        return self.home / "manifests" / ref.name / f"{ref.tag}.json"

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """An exclusive lock across processes (flock on locks/<key>.lock)."""
        path = self._dir("locks") / f"{key}.lock"
        with open(path, "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- blobs ----------------------------------------------------------------------
    def commit_blob(self, path: Path, digest: str) -> Path:
        """Move a verified file into blobs/ under its digest (atomic rename)."""
        target = self.blob_path(digest)
        self._dir("blobs")
        if target.exists():
            path.unlink(missing_ok=True)
        else:
            os.replace(path, target)
        return target

    def add_file(self, source: Path, progress: Progress | None = None) -> tuple[str, int]:
        """Copy a local file into the store; returns (digest, size). Hashes while copying."""
        if not source.is_file():
            raise ModelNotFound(f"model file not found: {source}", param="model")
        temp = self.temp_path(".gguf")
        digest = hashlib.sha256()
        done = 0
        try:
            with open(source, "rb") as src, open(temp, "wb") as dst:
                while block := src.read(CHUNK):
                    digest.update(block)
                    dst.write(block)
                    done += len(block)
                    if progress:
                        progress(done)
                dst.flush()
                os.fsync(dst.fileno())
            key = f"sha256:{digest.hexdigest()}"
            self.commit_blob(temp, key)
        finally:
            temp.unlink(missing_ok=True)
        return key, done

    def temp_dir(self, prefix: str = "") -> Path:
        """A fresh folder under tmp/ (for outputs that are folders, such as ONNX models)."""
        return Path(tempfile.mkdtemp(dir=self._dir("tmp"), prefix=prefix))

    def add_folder(self, folder: Path) -> tuple[str, int]:
        """Move a finished folder (under tmp/) into blobs/ under a digest of its files; returns
        (digest, total size). The digest covers every file's relative path and content."""
        digest = hashlib.sha256()
        size = 0
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
            digest.update(sha256_file(path).encode() + b"\n")
            size += path.stat().st_size
        key = f"sha256:{digest.hexdigest()}"
        target = self.blob_path(key)
        self._dir("blobs")
        if target.exists():
            shutil.rmtree(folder)
        else:
            os.replace(folder, target)
        return key, size

    # -- manifests ------------------------------------------------------------------
    def write_manifest(self, manifest: Manifest) -> None:
        ref = parse_ref(manifest.ref)
        path = self._manifest_path(ref)
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.temp_path(".json")
        temp.write_text(json.dumps(manifest.to_dict(), indent=1), encoding="utf-8")
        os.replace(temp, path)

    def find(self, spec: str, *, only_tag: bool = True) -> Manifest | None:
        """The manifest for ``name[:tag]``; without a tag, ``latest`` or else (``only_tag``) the only tag
        there is."""
        ref = parse_ref(spec)
        path = self._manifest_path(ref)
        if not path.is_file() and not ref.explicit_tag and only_tag:
            tags = sorted((self.home / "manifests" / ref.name).glob("*.json"))
            path = tags[0] if len(tags) == 1 else path
        if not path.is_file():
            return None
        try:
            return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"the manifest {path} is damaged ({exc}); remove it with `slm rm {spec}`") from exc

    def get(self, spec: str) -> Manifest:
        manifest = self.find(spec)
        if manifest is None:
            raise ModelNotFound(f"model '{spec}' is not in the store{self._suggest(spec)}", param="model")
        return manifest

    def _suggest(self, spec: str) -> str:
        import difflib

        names = [m.ref for m in self.list()] + [m.name for m in self.list()]
        close = difflib.get_close_matches(spec.lower(), names, n=3, cutoff=0.5)
        return f"; did you mean {', '.join(dict.fromkeys(close))}?" if close else "; pull it with `slm pull`"

    def model_path(self, manifest: Manifest) -> Path:
        path = self.blob_path(manifest.digest)
        if manifest.format in ("onnx", "mlx") and path.is_dir():
            return path
        if not path.is_file():
            raise StoreError(f"the file of '{manifest.ref}' is missing from the store; pull it again")
        return path

    def list(self) -> list[Manifest]:
        root = self.home / "manifests"
        out = []
        for path in sorted(root.glob("*/*.json")) if root.is_dir() else []:
            with contextlib.suppress(ValueError, KeyError, TypeError, OSError):
                out.append(Manifest.from_dict(json.loads(path.read_text(encoding="utf-8"))))
        return out

    def remove(self, spec: str) -> Manifest:
        manifest = self.get(spec)
        with self.lock("manifests"):
            path = self._manifest_path(ModelRef(manifest.name, manifest.tag))
            path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()
            if all(m.digest != manifest.digest for m in self.list()):
                blob = self.blob_path(manifest.digest)
                if blob.is_dir():
                    shutil.rmtree(blob)
                else:
                    blob.unlink(missing_ok=True)
        return manifest

    def copy(self, source: str, destination: str) -> Manifest:
        manifest = self.get(source)
        ref = parse_ref(destination)
        copied = Manifest.from_dict(manifest.to_dict())
        copied.name, copied.tag, copied.created_at = ref.name, ref.tag, time.time()
        copied.source = {"kind": "copy", "from": manifest.ref}
        self.write_manifest(copied)
        return copied

    def free_bytes(self) -> int:
        return shutil.disk_usage(self._dir("blobs")).free
