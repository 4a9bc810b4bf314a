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


@pytest.fixture(scope="session")
def rserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("reliability-home")
    proc = small_server(home)
    yield proc
    proc.close()


def still_serves(server: ServerProcess) -> None:
    """A normal request after a hostile one: the server answers it whole."""
    assert server.proc.poll() is None, f"the server exited: {server.last_line()}"
    resp = httpx.post(f"{server.base_url}/chat/completions", timeout=120,
                      json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2,
                            "temperature": 0})
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"][0]["finish_reason"] in ("stop", "length")
    assert httpx.get(f"{server.url}/ready", timeout=30).status_code == 200


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
