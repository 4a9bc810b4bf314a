"""Several models on one server: on-demand loading, keep_alive, LRU and memory-budget eviction,
one load for concurrent first requests, and load failures that are retried."""

from __future__ import annotations

import concurrent.futures
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from slmkit.store.embedded import EMBEDDED
from tests.conftest import EMBED_MODEL, MODEL
from tests.helpers import ServerProcess

GEMMA = "gemma-3-270m-q4_k_m"
BROKEN = "broken-model"
SMALL = ("--parallel", "2", "--ctx-size", "512", "--threads", "2")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def multi(gemma_path: Path, workdir: Path) -> Iterator[ServerProcess]:
    """SmolLM2, Gemma 3 (by file path) and a broken GGUF; at most two models loaded."""
    broken = workdir / f"{BROKEN}.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    proc = ServerProcess("--model", MODEL, "--model", str(gemma_path), "--model", str(broken),
                         "--max-loaded-models", "2", *SMALL, env={"SLM_LOG_LEVEL": "info"},
                         log=workdir / "multi.log")
    yield proc
    proc.close()


def _loaded(server: ServerProcess) -> dict[str, dict[str, object]]:
    """/api/ps by served name (it names each model name:tag, ':latest' when untagged)."""
    models = httpx.get(f"{server.url}/api/ps").json()["models"]
    assert all(":" in m["name"] and m["model"] == m["name"] for m in models)
    return {m["name"].removesuffix(":latest"): m for m in models}


def _log(workdir: Path, name: str) -> str:
    return (workdir / name).read_text(errors="replace")


def _chat(server: ServerProcess, model: str, **extra: object) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "stream": False,
            "options": {"num_predict": 2, "temperature": 0}, **extra}
    return httpx.post(f"{server.url}/api/chat", json=body, timeout=120)


def test_models_load_on_demand_and_concurrent_requests_load_once(multi: ServerProcess, workdir: Path) -> None:
    assert list(_loaded(multi)) == [MODEL]  # only the default model at start
    served = [m["id"] for m in httpx.get(f"{multi.base_url}/models").json()["data"]]
    assert served[:2] == [MODEL, GEMMA] and EMBED_MODEL in served
    assert f"{GEMMA}:latest" in [m["name"] for m in httpx.get(f"{multi.url}/api/tags").json()["models"]]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: _chat(multi, GEMMA), range(4)))
    assert [r.status_code for r in replies] == [200] * 4
    assert _log(workdir, "multi.log").count(f"loaded {GEMMA} ") == 1
    assert set(_loaded(multi)) == {MODEL, GEMMA}
    loads = sorted(r.json()["load_duration"] for r in replies)
    assert loads[-1] > 0


def test_lru_eviction_past_max_loaded_models(multi: ServerProcess) -> None:
    _chat(multi, MODEL)
    _chat(multi, GEMMA)  # now SmolLM2 is the least recently used
    time.sleep(1.1)  # a model used within the last second counts as busy (engine/llamacpp/lifetime.py)
    client = ollama.Client(host=multi.url, timeout=120)
    assert len(client.embed(model=EMBED_MODEL, input="hello").embeddings[0]) == 384
    assert set(_loaded(multi)) == {GEMMA, EMBED_MODEL}
    time.sleep(1.1)
    assert _chat(multi, MODEL).status_code == 200  # loads again, evicting Gemma
    assert set(_loaded(multi)) == {EMBED_MODEL, MODEL}
    ps = {(m.model or "").removesuffix(":latest"): m for m in client.ps().models}
    assert ps[MODEL].size > 0 and ps[MODEL].context_length == 512


def test_keep_alive_expiry_and_zero(multi: ServerProcess) -> None:
    assert _chat(multi, GEMMA, keep_alive="1s").status_code == 200
    assert GEMMA in _loaded(multi)
    deadline = time.monotonic() + 30
    while GEMMA in _loaded(multi) and time.monotonic() < deadline:
        time.sleep(0.25)
    assert GEMMA not in _loaded(multi), "unloaded once idle for its keep_alive"
    # keep_alive 0 with no prompt unloads at once, as Ollama does
    load = httpx.post(f"{multi.url}/api/generate", json={"model": MODEL}).json()
    assert load["done_reason"] == "load" and MODEL in _loaded(multi)
    unload = httpx.post(f"{multi.url}/api/generate", json={"model": MODEL, "keep_alive": 0}).json()
    assert unload["done_reason"] == "unload" and MODEL not in _loaded(multi)
    # keep_alive 0 on a real request unloads right after it
    assert _chat(multi, MODEL, keep_alive=0).status_code == 200
    embedded = ollama.Client(host=multi.url, timeout=120).embed(model=EMBED_MODEL, input="hi", keep_alive=0)
    assert len(embedded.embeddings) == 1
    deadline = time.monotonic() + 10
    while {MODEL, EMBED_MODEL} & set(_loaded(multi)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not {MODEL, EMBED_MODEL} & set(_loaded(multi))


def test_keep_alive_forever(multi: ServerProcess) -> None:
    assert _chat(multi, MODEL, keep_alive=-1).status_code == 200
    assert str(_loaded(multi)[MODEL]["expires_at"]) > "2100"


def test_load_failure_is_500_with_the_reason_then_retried(multi: ServerProcess, workdir: Path) -> None:
    failed = f"model {BROKEN} failed to load"
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        replies = list(pool.map(lambda _: _chat(multi, BROKEN), range(3)))
    assert [r.status_code for r in replies] == [500] * 3
    assert all(f"model '{BROKEN}' failed to load: " in r.json()["error"] for r in replies)
    assert all(f"{BROKEN}.gguf" in r.json()["error"] for r in replies)  # the reason names the damaged file
    attempts = _log(workdir, "multi.log").count(failed)
    assert 1 <= attempts <= 3  # requests that arrive while a load runs share it
    openai_shape = httpx.post(f"{multi.base_url}/chat/completions",
                              json={"model": BROKEN, "messages": [{"role": "user", "content": "Hi"}]})
    assert openai_shape.status_code == 500 and openai_shape.json()["error"]["code"] == "model_load_failed"
    assert _log(workdir, "multi.log").count(failed) == attempts + 1, "a failure is not remembered: it is retried"
    shutil.copyfile(EMBEDDED[MODEL].path(), workdir / f"{BROKEN}.gguf")  # repaired
    assert _chat(multi, BROKEN).status_code == 200


def test_memory_budget_evicts(gemma_path: Path, workdir: Path) -> None:
    """A budget that holds SmolLM2 or Gemma but not both."""
    budget = gemma_path.stat().st_size + 40_000_000
    proc = ServerProcess("--model", MODEL, "--model", str(gemma_path), "--max-memory", str(budget), *SMALL)
    try:
        assert list(_loaded(proc)) == [MODEL]
        assert _chat(proc, GEMMA).status_code == 200
        assert list(_loaded(proc)) == [GEMMA]
        assert sum(int(str(m["size"])) for m in _loaded(proc).values()) <= budget
    finally:
        proc.close()
