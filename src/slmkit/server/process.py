"""`slm serve` in a child process on a free loopback port: used by `slm bench --spawn`, the
pytest plugin (``slmkit.testing``) and the project's own tests."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from slmkit.errors import ServiceUnavailable


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class ServeProcess:
    """``python -m slmkit serve --port PORT ARGS...``, started at once and ready (``/health``
    answers) when the constructor returns; ``close()`` stops it (SIGTERM, then SIGKILL).

    Its output goes to ``log`` (a temporary file when not given, removed on close). A server that
    exits or does not come up within ``timeout`` raises ``ServiceUnavailable`` naming the last
    line it printed.
    """

    def __init__(self, args: Sequence[str] = (), *, env: Mapping[str, str] | None = None,
                 log: Path | None = None, scheme: str = "http", verify: ssl.SSLContext | bool = True,
                 timeout: float = 180.0, new_session: bool = False) -> None:
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._verify = verify
        self._own_log = log is None
        self.log = log if log is not None else Path(tempfile.mkstemp(prefix="slm-serve-", suffix=".log")[1])
        cmd = [sys.executable, "-m", "slmkit", "serve", "--port", str(self.port), *args]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=new_session)
        self._wait_ready(timeout)

    @property
    def base_url(self) -> str:
        """The OpenAI API root (``.../v1``)."""
        return f"{self.url}/v1"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceUnavailable(f"slm serve exited with {self.proc.returncode}: {self.last_line()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0, verify=self._verify, trust_env=False).status_code \
                        == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.close()
        raise ServiceUnavailable(f"slm serve did not become healthy in {timeout:.0f}s: {self.last_line()}")

    def last_line(self) -> str:
        """The last line the server printed (for error messages)."""
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no output"
        return lines[-1] if lines else "no output"

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._own_log:
            self.log.unlink(missing_ok=True)

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
