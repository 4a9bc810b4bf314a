"""Downloads from the Hugging Face Hub through ``huggingface_hub``.

``huggingface_hub`` supplies the endpoint (``HF_ENDPOINT``), the auth headers (``HF_TOKEN`` or
a saved login), offline mode (``HF_HUB_OFFLINE``) and its HTTP session; the transfer itself is
ours so that it lands straight in the store: a ``.part`` file that a later pull resumes with
a Range request, hashed and checked against the sha256 the Hub lists for LFS files, then
renamed into ``blobs/``. One lock per file means concurrent pulls of one model download once.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import constants
from huggingface_hub.hf_api import RepoFile
from huggingface_hub.utils import build_hf_headers, get_session  # type: ignore[attr-defined]

from slmkit.errors import HubError, ModelNotFound, StoreError
from slmkit.store.store import Store, sha256_file

try:  # huggingface_hub >= 2 uses httpx2; 1.x uses httpx
    import httpx2 as _http
except ImportError:  # pragma: no cover
    import httpx as _http  # type: ignore[no-redef]

DISK_MARGIN = 64 << 20  # keep this much free beyond the file
ATTEMPTS = 3
Progress = Callable[[int, int], None]  # (completed, total)


@dataclass(frozen=True)
class HubFile:
    repo: str
    filename: str
    revision: str
    size: int
    sha256: str | None  # the LFS oid; None for small files stored in git

    @property
    def url(self) -> str:
        return f"{endpoint()}/{self.repo}/resolve/{self.revision}/{self.filename}"

    @property
    def key(self) -> str:
        return self.sha256 or hashlib.sha256(self.url.encode()).hexdigest()


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    return constants.is_offline_mode() or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _headers() -> dict[str, str]:
    return dict(build_hf_headers(token=os.environ.get("HF_TOKEN") or None))


def _get(url: str, **kwargs: Any) -> Any:
    if offline():
        raise HubError(f"cannot reach the Hub: offline mode is on (HF_HUB_OFFLINE); {url} was not fetched")
    try:
        return get_session().get(url, headers=_headers(), timeout=_http.Timeout(30.0, connect=10.0), **kwargs)
    except _http.TransportError as exc:
        raise HubError(f"cannot reach the Hub at {endpoint()}: {exc.__class__.__name__}: {exc}") from exc


def _raise_for(response: Any, what: str) -> None:
    status = response.status_code
    if status in (401, 403):
        raise HubError(f"the Hub refused access to {what} (HTTP {status}); set HF_TOKEN if it is gated or private")
    if status == 404:
        raise ModelNotFound(f"{what} was not found on the Hub ({endpoint()})", param="model")
    if status >= 400:
        raise HubError(f"the Hub answered HTTP {status} for {what}")


def list_files(repo: str, revision: str = "main") -> list[RepoFile]:
    """Every file in a Hub model repo, with sizes and LFS sha256s."""
    response = _get(f"{endpoint()}/api/models/{repo}/tree/{revision}", params={"recursive": "true"})
    _raise_for(response, f"the repository {repo}")
    try:
        items = response.json()
        return [RepoFile(**item) for item in items if item.get("type") == "file"]  # type: ignore[no-untyped-call]
    except (ValueError, KeyError, TypeError) as exc:
        raise HubError(f"the Hub sent an unreadable file list for {repo}: {exc}") from exc


def pick_file(repo: str, selector: str | None, revision: str = "main") -> HubFile:
    """The GGUF in ``repo`` that ``selector`` names: a file name, a quantization, or (None) q4_k_m."""
    files = {f.path: f for f in list_files(repo, revision) if f.path.endswith(".gguf")}
    if not files:
        raise ModelNotFound(f"{repo} has no GGUF files", param="model")
    if selector and selector in files:
        chosen = files[selector]
    else:
        wanted = (selector or "q4_k_m").lower()
        matches = [p for p in files if quant_of(p) == wanted]
        if not matches and selector is None and len(files) == 1:
            matches = list(files)
        if len(matches) != 1:
            known = ", ".join(sorted(files))
            raise ModelNotFound(f"no single GGUF for '{wanted}' in {repo}; files: {known}", param="model")
        chosen = files[matches[0]]
    sha = chosen.lfs.sha256 if chosen.lfs is not None else None
    return HubFile(repo, chosen.path, revision, int(chosen.size), sha)


def quant_of(filename: str) -> str:
    """The quantization a GGUF file name ends with: 'Model-Q4_K_M.gguf' -> 'q4_k_m'."""
    stem = filename.rsplit("/", 1)[-1].removesuffix(".gguf").lower()
    for sep in ("-", "."):
        head, _, tail = stem.rpartition(sep)
        if head and tail and (tail[0] in "qfi" or tail == "bf16"):
            return tail
    return stem


def download(store: Store, hub: HubFile, progress: Progress | None = None) -> str:
    """Fetch ``hub`` into the store (once, however many pulls ask) and return its digest."""
    known = f"sha256:{hub.sha256}" if hub.sha256 else None
    if known and store.has_blob(known):
        return known
    with store.lock(hub.key):
        if known and store.has_blob(known):  # another pull finished it while we waited
            return known
        part = store.partial_path(hub.key)
        have = part.stat().st_size if part.exists() else 0
        needed = hub.size - min(have, hub.size) + DISK_MARGIN
        if store.free_bytes() < needed:
            raise StoreError(f"not enough disk space for {hub.filename}: it needs {needed >> 20} MiB more, "
                             f"{store.free_bytes() >> 20} MiB are free under {store.home}", code="disk_full")
        _transfer(hub, part, progress)
        digest = _verify(hub, part)
        store.commit_blob(part, f"sha256:{digest}")
        return f"sha256:{digest}"


def _verify(hub: HubFile, part: Path) -> str:
    """The sha256 of a finished download, checked against the listing: its sha256 where the Hub
    lists one, always its size, and that it reads as GGUF. A file that fails is deleted."""
    from slmkit.store.gguf_meta import read_gguf

    size = part.stat().st_size
    try:
        if size != hub.size:
            raise StoreError(f"size mismatch for {hub.filename}: the Hub lists {hub.size} bytes, the download has "
                             f"{size}; the download was deleted", code="size_mismatch")
        digest = sha256_file(part)
        if hub.sha256 and digest != hub.sha256:
            raise StoreError(f"checksum mismatch for {hub.filename}: the Hub lists sha256 {hub.sha256}, "
                             f"the download has {digest}; the download was deleted", code="checksum_mismatch")
        if hub.filename.endswith(".gguf"):
            read_gguf(part)  # CorruptGGUF: never registered
    except StoreError:
        part.unlink(missing_ok=True)
        raise
    return digest


def _transfer(hub: HubFile, part: Any, progress: Progress | None) -> None:
    """Download to ``part``, resuming what is there; a cut connection is retried from where it stopped."""
    for attempt in range(1, ATTEMPTS + 1):
        have = part.stat().st_size if part.exists() else 0
        if have > hub.size:
            part.unlink()
            have = 0
        if have == hub.size and hub.size > 0:
            return
        try:
            _fetch_range(hub, part, have, progress)
            return
        except _http.TransportError as exc:
            got = part.stat().st_size if part.exists() else 0
            if attempt == ATTEMPTS or (isinstance(exc, _http.ConnectError) and got == 0):
                raise HubError(f"download of {hub.filename} failed ({exc.__class__.__name__}); "
                               f"{got} of {hub.size} bytes are kept and the next pull resumes") from exc


def _fetch_range(hub: HubFile, part: Any, have: int, progress: Progress | None) -> None:
    if offline():
        raise HubError(f"cannot download {hub.filename}: offline mode is on (HF_HUB_OFFLINE)")
    headers = _headers()
    if have:
        headers["Range"] = f"bytes={have}-"
    timeout = _http.Timeout(60.0, connect=10.0)
    with get_session().stream("GET", hub.url, headers=headers, timeout=timeout) as response:
        if response.status_code == 416:  # nothing left to send: the part is complete
            return
        _raise_for(response, f"{hub.repo}/{hub.filename}")
        mode = "ab" if have and response.status_code == 206 else "wb"
        done = have if mode == "ab" else 0
        with open(part, mode) as fh:
            for block in response.iter_bytes(1 << 16):
                block = block[:hub.size - done]  # a mirror that sends more than listed is cut off
                fh.write(block)
                done += len(block)
                if progress:
                    progress(done, hub.size)
                if done >= hub.size:
                    break
            fh.flush()
            os.fsync(fh.fileno())
    if done < hub.size:
        raise _http.RemoteProtocolError(f"connection closed after {done} of {hub.size} bytes")


def download_folder(repo: str, dest: Path, wanted: Callable[[str], bool], revision: str = "main") -> list[str]:
    """Fetch the files of ``repo`` that ``wanted`` accepts into the folder ``dest`` (a model folder
    for conversion, not the blob store); LFS files are checked against their sha256."""
    chosen = [f for f in list_files(repo, revision) if wanted(f.path)]
    if not chosen:
        raise ModelNotFound(f"{repo} has no files to convert", param="model")
    for item in chosen:
        sha = item.lfs.sha256 if item.lfs is not None else None
        hub = HubFile(repo, item.path, revision, int(item.size), sha)
        if item.path.startswith("/") or ".." in item.path.split("/"):
            raise HubError(f"{repo} lists an unsafe file name: {item.path!r}")
        target = dest / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        _transfer(hub, target, None)
        if sha and sha256_file(target) != sha:
            raise StoreError(f"checksum mismatch for {repo}/{item.path}", code="checksum_mismatch")
    return [f.path for f in chosen]
