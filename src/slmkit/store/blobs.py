"""Blobs uploaded over HTTP (``POST /api/blobs/:digest``, what ``ollama create`` with files sends).

An upload is written under ``tmp/`` and hashed as it arrives; it is renamed into ``blobs/`` only
when it is complete, within its size cap and its sha256 is the digest it was sent under, so a
final name never holds a partial or a wrong file. A model created from one names it ``@sha256:<hex>``."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from types import TracebackType

from slmkit.errors import InvalidRequest, PayloadTooLarge, StoreError
from slmkit.store.store import Store

BLOB_PREFIXES = ("@sha256:", "sha256:")
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def is_blob_ref(spec: str) -> bool:
    """``@sha256:<hex>`` (or ``sha256:<hex>``): a blob of the store, not a name or a path."""
    return spec.startswith(BLOB_PREFIXES)


def blob_digest(spec: str) -> str:
    """``sha256:<hex>`` from a blob reference, checked (``StoreError`` for a malformed one)."""
    digest = spec.removeprefix("@")
    if not _DIGEST.fullmatch(digest):
        raise StoreError(f"invalid blob digest '{digest[:80]}' (expected sha256:<64 hex digits>)")
    return digest


class BlobUpload:
    """One blob arriving in pieces: ``write`` each, then ``commit``; leaving the ``with`` block
    without a commit (an error, a cut connection) removes the partial file."""

    def __init__(self, store: Store, digest: str, max_bytes: int) -> None:
        blob_digest(digest)  # a malformed digest: 400 before anything is written
        self.store, self.digest, self.max_bytes = store, digest, max_bytes
        self.size = 0
        self._hash = hashlib.sha256()
        self._temp = store.temp_path(".blob")
        self._fh = open(self._temp, "wb")  # noqa: SIM115 - closed in commit or __exit__

    def __enter__(self) -> BlobUpload:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._fh.close()
        self._temp.unlink(missing_ok=True)  # committed: already renamed away

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise PayloadTooLarge(f"blob over the {self.max_bytes}-byte limit (server.max_blob_bytes)")
        self._hash.update(chunk)
        self._fh.write(chunk)

    def commit(self) -> Path:
        """Verify the digest and move the file into ``blobs/`` (400 ``digest mismatch`` otherwise)."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        actual = f"sha256:{self._hash.hexdigest()}"
        if actual != self.digest:
            raise InvalidRequest(f"digest mismatch: the body's sha256 is {actual}, not {self.digest}",
                                 param="digest")
        return self.store.commit_blob(self._temp, self.digest)
