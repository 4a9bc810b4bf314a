"""Pull faults against the local fake Hub: a pull killed with SIGKILL part way resumes where it
stopped; a corrupt or truncated download is never registered (see also tests/store/test_hub_pull.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakehub import FakeHub, HubFile, gguf_bytes

REPO = "someone/Slow-GGUF"


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    fake = FakeHub().start()
    yield fake
    fake.close()


def _pull(home: Path, hub: FakeHub, spec: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
    env.update({"SLM_HOME": str(home), "HF_ENDPOINT": hub.url, "HF_HOME": str(home / "hf")})
    return subprocess.Popen([sys.executable, "-m", "slmkit", "pull", spec], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _manifests(home: Path) -> list[Path]:
    return [p for p in (home / "manifests").rglob("*") if p.is_file()] if (home / "manifests").is_dir() else []


def test_a_pull_killed_mid_transfer_resumes(hub: FakeHub, tmp_path: Path) -> None:
    data = gguf_bytes(2_000_000)
    hub.repos[REPO] = {"slow-Q4_K_M.gguf": HubFile(data, delay=0.05)}  # ~1.5 s for the whole file
    home = tmp_path / "home"
    first = _pull(home, hub, f"hf.co/{REPO}")
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 200_000 for p in home.glob("partial/*.part")):
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    kept = next(home.glob("partial/*.part")).stat().st_size
    assert 0 < kept < len(data) and not _manifests(home) and not list(home.glob("blobs/sha256-*"))
    hub.repos[REPO]["slow-Q4_K_M.gguf"].delay = 0.0
    again = _pull(home, hub, f"hf.co/{REPO}")
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    resumed = hub.file_hits("slow-Q4_K_M.gguf")[-1]
    assert resumed.range is not None and int(resumed.range.removeprefix("bytes=").rstrip("-")) >= kept - (1 << 16)
    assert next(home.glob("blobs/sha256-*")).read_bytes() == data and len(_manifests(home)) == 1


@pytest.mark.parametrize("data", [b"not a model at all" * 1000, gguf_bytes(64)[:12]], ids=["corrupt", "truncated"])
def test_a_bad_file_is_never_registered(hub: FakeHub, tmp_path: Path, data: bytes) -> None:
    hub.repos[REPO] = {"slow-Q4_K_M.gguf": HubFile(data, lfs=False)}
    home = tmp_path / "home"
    done = _pull(home, hub, f"hf.co/{REPO}")
    _, err = done.communicate(timeout=120)
    assert done.returncode != 0 and "GGUF" in err
    assert not _manifests(home) and not list(home.glob("blobs/sha256-*")) and not list(home.glob("partial/*.part"))
