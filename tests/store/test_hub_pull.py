"""`slm pull` from a local server in the Hub's layout (HF_ENDPOINT): no internet involved."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmkit.store.embedded import EMBEDDED
from tests.fakehub import FakeHub, HubFile, gguf_bytes
from tests.helpers import free_port

TOKEN = "hf_test_token"
SMOL_REPO = "bartowski/SmolLM2-135M-Instruct-GGUF"  # the catalog's repo for smollm2-135m


def slm(*args: str, home: Path, hub: FakeHub | None = None, extra: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_ENDPOINT", "HF_TOKEN")}
    env.update({"SLM_HOME": str(home), "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_TELEMETRY": "1",
                "HF_HOME": str(home / "hf")})
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
    env.update(extra or {})
    return subprocess.run([sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def one_line_error(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out.stderr
    return lines[0]


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    fake = FakeHub().start()
    yield fake
    fake.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "slmhome"


def stored(home: Path) -> list[dict[str, object]]:
    """`slm list --json` without the embedded models it also lists."""
    listed = json.loads(slm("list", "--json", home=home).stdout)
    return [m for m in listed if m["source"]["kind"] != "embedded"]


def _blob_files(home: Path) -> list[Path]:
    return sorted((home / "blobs").glob("sha256-*")) if (home / "blobs").is_dir() else []


def _parts(home: Path) -> list[Path]:
    return sorted((home / "partial").glob("*.part")) if (home / "partial").is_dir() else []


def test_pull_catalog_name_downloads_verifies_and_registers(hub: FakeHub, home: Path) -> None:
    data = EMBEDDED["smollm2-135m-instruct"].path().read_bytes()
    hub.repos[SMOL_REPO] = {"SmolLM2-135M-Instruct-Q4_K_M.gguf": HubFile(data),
                            "SmolLM2-135M-Instruct-Q8_0.gguf": HubFile(b"other")}
    out = slm("pull", "smollm2-135m:q4_k_m", "--json", home=home, hub=hub)
    assert out.returncode == 0, out.stderr
    manifest = json.loads(out.stdout)
    digest = hashlib.sha256(data).hexdigest()
    assert manifest["model"]["digest"] == f"sha256:{digest}"
    assert manifest["name"] == "smollm2-135m" and manifest["tag"] == "q4_k_m"
    assert _blob_files(home) == [home / "blobs" / f"sha256-{digest}"]
    assert not _parts(home)
    assert all(h.authorization == f"Bearer {TOKEN}" for h in hub.hits if "GGUF" in h.path)  # HF_TOKEN is sent
    shown = slm("show", "smollm2-135m", "--json", home=home, hub=hub)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["architecture"] == "llama"
    listed = stored(home)
    assert [f"{m['name']}:{m['tag']}" for m in listed] == ["smollm2-135m:q4_k_m"]


QWEN_REPO = "unsloth/Qwen3-0.6B-GGUF"  # the catalog's repo for qwen3-0.6b (alias qwen3:0.6b)


def test_pull_by_ollama_name_saves_it_under_that_name(hub: FakeHub, home: Path) -> None:
    data = EMBEDDED["smollm2-135m-instruct"].path().read_bytes()  # a real GGUF, so show and estimate read it
    hub.repos[QWEN_REPO] = {"Qwen3-0.6B-Q4_K_M.gguf": HubFile(data), "Qwen3-0.6B-Q8_0.gguf": HubFile(gguf_bytes(900))}
    for spec, file_name in (("qwen3:0.6b", "Qwen3-0.6B-Q4_K_M.gguf"), ("qwen3:0.6b-q8_0", "Qwen3-0.6B-Q8_0.gguf")):
        out = slm("pull", spec, "--json", home=home, hub=hub)
        assert out.returncode == 0, out.stderr
        manifest = json.loads(out.stdout)
        assert (f"{manifest['name']}:{manifest['tag']}", manifest["model"]["file_name"]) == (spec, file_name)
    assert sorted(f"{m['name']}:{m['tag']}" for m in stored(home)) == ["qwen3:0.6b", "qwen3:0.6b-q8_0"]
    shown = slm("show", "qwen3:0.6b", "--json", home=home)
    assert shown.returncode == 0 and json.loads(shown.stdout)["name"] == "qwen3:0.6b"
    estimate = slm("models", "estimate", "qwen3:0.6b", "--json", home=home)
    assert json.loads(estimate.stdout)["disk_bytes"] == len(data)  # the pulled file, not the catalog's numbers


def test_pull_hf_co_picks_the_file_by_quant(hub: FakeHub, home: Path) -> None:
    hub.repos["someone/Tiny-GGUF"] = {"tiny-Q4_K_M.gguf": HubFile(gguf_bytes(300_000)),
                                      "tiny-Q8_0.gguf": HubFile(gguf_bytes(500_000))}
    out = slm("pull", "hf.co/someone/Tiny-GGUF:Q8_0", "--json", home=home, hub=hub)
    assert out.returncode == 0, out.stderr
    manifest = json.loads(out.stdout)
    assert manifest["model"]["file_name"] == "tiny-Q8_0.gguf" and manifest["model"]["size"] == 500_000
    assert f"{manifest['name']}:{manifest['tag']}" == "tiny:q8_0"


def test_pull_of_a_repo_with_one_gguf_tags_it_by_its_quant(hub: FakeHub, home: Path) -> None:
    hub.repos["someone/Only-GGUF"] = {"only.Q6_K.gguf": HubFile(gguf_bytes(1000)), "README.md": HubFile(b"hi")}
    manifest = json.loads(slm("pull", "hf.co/someone/Only-GGUF", "--json", home=home, hub=hub).stdout)
    assert f"{manifest['name']}:{manifest['tag']}" == "only:q6_k"


def test_cut_connection_is_resumed_with_a_range_request(hub: FakeHub, home: Path) -> None:
    data = gguf_bytes(2_000_000)
    hub.repos["someone/Tiny-GGUF"] = {"tiny-Q4_K_M.gguf": HubFile(data, cut_first=1)}
    out = slm("pull", "hf.co/someone/Tiny-GGUF", home=home, hub=hub)
    assert out.returncode == 0, out.stderr
    hits = hub.file_hits("tiny-Q4_K_M.gguf")
    assert len(hits) == 2
    assert hits[0].range is None and hits[1].range is not None
    resumed_at = int(hits[1].range.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= hits[0].sent  # it kept what arrived and asked only for the rest
    assert hits[1].sent == len(data) - resumed_at
    assert _blob_files(home)[0].read_bytes() == data


def test_interrupted_pull_leaves_no_manifest_and_resumes_next_time(hub: FakeHub, home: Path) -> None:
    data = gguf_bytes(1_500_000)
    hub.repos["someone/Tiny-GGUF"] = {"tiny-Q4_K_M.gguf": HubFile(data, cut_first=3)}  # every attempt of one pull
    failed = slm("pull", "hf.co/someone/Tiny-GGUF", home=home, hub=hub)
    assert "resumes" in one_line_error(failed)
    assert stored(home) == []
    assert not _blob_files(home) and len(_parts(home)) == 1
    kept = _parts(home)[0].stat().st_size
    assert kept > 0
    again = slm("pull", "hf.co/someone/Tiny-GGUF", home=home, hub=hub)
    assert again.returncode == 0, again.stderr
    assert hub.file_hits("tiny-Q4_K_M.gguf")[-1].range == f"bytes={kept}-"  # resumed, not restarted
    assert _blob_files(home)[0].read_bytes() == data and not _parts(home)


def test_checksum_mismatch_deletes_the_download(hub: FakeHub, home: Path) -> None:
    hub.repos["someone/Tiny-GGUF"] = {"tiny-Q4_K_M.gguf": HubFile(gguf_bytes(400_000), sha256="ab" * 32)}
    out = slm("pull", "hf.co/someone/Tiny-GGUF", home=home, hub=hub)
    assert "checksum mismatch" in one_line_error(out)
    assert not _blob_files(home) and not _parts(home)
    assert stored(home) == []


@pytest.mark.parametrize(("spec", "message"), [
    ("hf.co/someone/Tiny-GGUF:Q2_K", "no single GGUF for 'q2_k'"),  # no such quant in the repo
    ("hf.co/someone/Gone-GGUF", "was not found"),  # listed, but the download 404s
    ("hf.co/nobody/Nothing-GGUF", "repository nobody/Nothing-GGUF was not found"),
])
def test_missing_file_or_repo(hub: FakeHub, home: Path, spec: str, message: str) -> None:
    hub.repos["someone/Tiny-GGUF"] = {"tiny-Q4_K_M.gguf": HubFile(b"x" * 1000)}
    hub.repos["someone/Gone-GGUF"] = {"gone-Q4_K_M.gguf": HubFile(b"x" * 1000, missing=True)}
    assert message in one_line_error(slm("pull", spec, home=home, hub=hub))
    assert not _blob_files(home)


def test_concurrent_pulls_of_one_model_download_once(hub: FakeHub, home: Path) -> None:
    data = gguf_bytes(1_000_000)
    hub.repos["someone/Tiny-GGUF"] = {"tiny-Q4_K_M.gguf": HubFile(data, delay=0.02)}  # ~0.3 s per transfer
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE",)}
    env.update({"SLM_HOME": str(home), "HF_ENDPOINT": hub.url, "HF_TOKEN": TOKEN})
    cmd = [sys.executable, "-m", "slmkit", "pull", "hf.co/someone/Tiny-GGUF"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    assert len(hub.file_hits("tiny-Q4_K_M.gguf")) == 1
    assert _blob_files(home)[0].read_bytes() == data


def test_disk_too_small_fails_before_downloading(hub: FakeHub, home: Path) -> None:
    hub.repos["someone/Huge-GGUF"] = {"huge-Q4_K_M.gguf": HubFile(b"x" * 1000, size=1 << 50)}  # 1 PiB listed
    assert "not enough disk space" in one_line_error(slm("pull", "hf.co/someone/Huge-GGUF", home=home, hub=hub))
    assert hub.file_hits("huge-Q4_K_M.gguf") == []


def test_no_network_fails_fast_with_a_clear_message(home: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    out = slm("pull", "qwen3-0.6b", home=home, extra={"HF_ENDPOINT": dead})
    assert "cannot reach the Hub" in one_line_error(out)


def test_offline_mode_is_respected(hub: FakeHub, home: Path) -> None:
    hub.repos["someone/Tiny-GGUF"] = {"tiny-Q4_K_M.gguf": HubFile(b"x" * 1000)}
    out = slm("pull", "hf.co/someone/Tiny-GGUF", home=home, hub=hub, extra={"HF_HUB_OFFLINE": "1"})
    assert "offline mode" in one_line_error(out)
    assert [h for h in hub.hits if "GGUF" in h.path] == []


def test_unknown_catalog_name_suggests_the_nearest(home: Path) -> None:
    message = one_line_error(slm("pull", "qwen3-0.7b", home=home))
    assert "did you mean" in message and "qwen3-0.6b" in message


# -- listings without a sha256, corrupt files, mirrors that send too much (issue 17) ----------
@pytest.fixture
def in_process_hub(hub: FakeHub, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return hub


def test_a_listing_without_sha256_is_sized_hashed_and_recorded(in_process_hub: FakeHub, home: Path) -> None:
    from slmkit.store.pull import pull
    from slmkit.store.store import Store

    data = gguf_bytes(200_000)
    in_process_hub.repos["someone/Plain-GGUF"] = {"plain-Q4_K_M.gguf": HubFile(data, lfs=False)}
    manifest = pull(Store(home), "hf.co/someone/Plain-GGUF")
    assert manifest.digest == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert manifest.source["sha256"] == "computed" and manifest.size == len(data)
    assert _blob_files(home)[0].read_bytes() == data


@pytest.mark.parametrize("data", [os.urandom(300_000), gguf_bytes(64)[:20]], ids=["not-gguf", "truncated"])
def test_a_file_that_is_not_gguf_is_never_registered(in_process_hub: FakeHub, home: Path, data: bytes) -> None:
    from slmkit.errors import CorruptGGUF
    from slmkit.store.pull import pull
    from slmkit.store.store import Store

    in_process_hub.repos["someone/Bad-GGUF"] = {"bad-Q4_K_M.gguf": HubFile(data, lfs=False)}
    with pytest.raises(CorruptGGUF):
        pull(Store(home), "hf.co/someone/Bad-GGUF")
    assert not _blob_files(home) and not _parts(home) and Store(home).find("bad") is None


@pytest.mark.parametrize("lfs", [True, False])
def test_a_mirror_sending_more_than_listed_is_cut_off(in_process_hub: FakeHub, home: Path, lfs: bool) -> None:
    from slmkit.store.pull import pull
    from slmkit.store.store import Store

    data = gguf_bytes(300_000)
    in_process_hub.repos["someone/Long-GGUF"] = {"long-Q4_K_M.gguf": HubFile(data, lfs=lfs, extra=b"\0" * 500_000)}
    manifest = pull(Store(home), "hf.co/someone/Long-GGUF")
    assert manifest.size == len(data) and _blob_files(home)[0].read_bytes() == data
