"""A local HTTP server that serves files in the Hugging Face Hub's layout, for pulls through HF_ENDPOINT.

    GET /api/models/{owner}/{repo}/tree/{revision}   the file list, with sizes and LFS sha256s
    GET /{owner}/{repo}/resolve/{revision}/{path}    the file, with Range support

Per-file switches make it misbehave the ways the real Hub and networks do: cut the connection
part way (``cut_first`` times), list a wrong sha256, list a file it then 404s, report a size, or
send slowly so concurrent pulls overlap.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def gguf_bytes(size: int) -> bytes:
    """``size`` bytes that read as a GGUF file (a header with no tensors, then random bytes)."""
    header = b"GGUF" + struct.pack("<IQQ", 3, 0, 0)
    return header + os.urandom(max(0, size - len(header)))


@dataclass
class HubFile:
    data: bytes
    sha256: str | None = None  # what the listing claims; default: the real digest
    size: int | None = None  # what the listing claims; default: the real size
    cut_first: int = 0  # this many GETs stop after half the bytes
    missing: bool = False  # listed, but resolve answers 404
    delay: float = 0.0  # seconds between 64 KiB chunks
    lfs: bool = True  # False: listed like a small git file, with no sha256
    extra: bytes = b""  # sent after the listed bytes, as a broken mirror might

    def listed_sha(self) -> str:
        return self.sha256 or hashlib.sha256(self.data).hexdigest()


@dataclass
class Hit:
    path: str
    range: str | None
    authorization: str | None
    sent: int = 0


@dataclass
class FakeHub:
    repos: dict[str, dict[str, HubFile]] = field(default_factory=dict)
    hits: list[Hit] = field(default_factory=list)

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                return

            def do_GET(self) -> None:
                hub._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def file_hits(self, filename: str) -> list[Hit]:
        return [h for h in self.hits if "/resolve/" in h.path and h.path.endswith(filename)]

    # -- handling --------------------------------------------------------------------
    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path.split("?")[0]
        hit = Hit(path, req.headers.get("Range"), req.headers.get("Authorization"))
        self.hits.append(hit)
        parts = path.strip("/").split("/")
        if len(parts) >= 5 and parts[0] == "api" and parts[1] == "models" and parts[4] == "tree":
            self._tree(req, f"{parts[2]}/{parts[3]}")
        elif len(parts) >= 5 and parts[2] == "resolve":
            self._resolve(req, f"{parts[0]}/{parts[1]}", "/".join(parts[4:]), hit)
        else:
            self._send(req, 404, b'{"error": "not found"}')

    def _send(self, req: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "application/json") -> None:
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def _tree(self, req: BaseHTTPRequestHandler, repo: str) -> None:
        files = self.repos.get(repo)
        if files is None:
            self._send(req, 404, json.dumps({"error": f"Repository {repo} not found"}).encode())
            return
        listing = [{"type": "file", "path": name, "size": f.size or len(f.data), "oid": "0" * 40,
                    **({"lfs": {"oid": f.listed_sha(), "size": f.size or len(f.data), "pointerSize": 134}}
                       if f.lfs else {})}
                   for name, f in files.items()]
        self._send(req, 200, json.dumps(listing).encode())

    def _resolve(self, req: BaseHTTPRequestHandler, repo: str, name: str, hit: Hit) -> None:
        f = self.repos.get(repo, {}).get(name)
        if f is None or f.missing:
            self._send(req, 404, b'{"error": "Entry not found"}')
            return
        start = int(hit.range.split("=")[1].split("-")[0]) if hit.range else 0
        body = (f.data + f.extra)[start:]
        req.send_response(206 if start else 200)
        req.send_header("Content-Type", "application/octet-stream")
        req.send_header("Content-Length", str(len(body)))
        if start:
            req.send_header("Content-Range", f"bytes {start}-{len(f.data) - 1}/{len(f.data)}")
        req.end_headers()
        limit = len(body)
        if f.cut_first > 0:
            f.cut_first -= 1
            limit = len(body) // 2
        for offset in range(0, limit, 1 << 16):
            chunk = body[offset:min(offset + (1 << 16), limit)]
            try:
                req.wfile.write(chunk)
            except OSError:
                return
            hit.sent += len(chunk)
            if f.delay:
                time.sleep(f.delay)
        if limit < len(body):
            req.wfile.flush()
            req.close_connection = True
            req.connection.shutdown(2)
