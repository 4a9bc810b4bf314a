"""The reliability suite's own server: small settings (2 slots of 256 tokens, a queue of 2, short
answers), its own store, the Hub unreachable (offline), loopback only. Shared by every module
here; a test that must stop or overload a server starts its own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import MODEL
from tests.helpers import ServerProcess

SMALL = ("--parallel", "2", "--ctx-size", "256", "--max-queue", "2", "--threads", "2")
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}


def small_server(home: Path, *args: str, env: dict[str, str] | None = None) -> ServerProcess:
    return ServerProcess(*SMALL, *args, env={**OFFLINE, "SLM_HOME": str(home), **(env or {})})


class Shared:
    """The suite's server, started again if a test killed it (that test has failed already)."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.server = small_server(home)

    def alive(self) -> ServerProcess:
        if self.server.proc.poll() is not None:
            self.server.close()
            self.server = small_server(self.home)
        return self.server


@pytest.fixture(scope="session")
def _shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    shared = Shared(tmp_path_factory.mktemp("reliability-home"))
    yield shared
    shared.server.close()


@pytest.fixture
def rserver(_shared: Shared) -> ServerProcess:
    return _shared.alive()


def still_serves(server: ServerProcess) -> None:
    """A normal request after a hostile one: the server answers it whole. A server that does not
    (dead or wedged) is stopped, so the next test gets a new one instead of waiting on it."""
    try:
        assert server.proc.poll() is None, f"the server exited: {server.last_line()}"
        resp = httpx.post(f"{server.base_url}/chat/completions", timeout=60,
                          json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1,
                                "temperature": 0})
        assert resp.status_code == 200, resp.text
        assert resp.json()["choices"][0]["finish_reason"] in ("stop", "length")
        assert httpx.get(f"{server.url}/ready", timeout=30).status_code == 200
    except (AssertionError, httpx.HTTPError):
        server.proc.kill()
        raise


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
