"""`slm bench` against the real server: short sweeps, JSON consistency, plots, bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from slmkit.store.resolve import resolve_model
from tests.bench.stub import StubServer
from tests.conftest import MODEL
from tests.helpers import ServerProcess, free_port

PNG = b"\x89PNG\r\n\x1a\n"


def _slm(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, timeout=timeout)


def _ordered(dist: dict[str, float]) -> None:
    assert 0 <= dist["min"] <= dist["p50"] <= dist["p90"] <= dist["p95"] <= dist["p99"] <= dist["max"]
    assert dist["min"] <= dist["mean"] <= dist["max"]


def assert_consistent(doc: dict[str, Any]) -> None:
    """The internal consistency every `slm bench` result must have."""
    assert doc["schema"] == "slmkit.bench/1"
    for run in doc["runs"]:
        reqs, per = run["requests"], run["per_request"]
        assert reqs["sent"] == len(per) == reqs["completed"] + reqs["failed"]
        assert sum(run["errors"].values()) == reqs["failed"]
        assert run["output_tokens"] == sum(r["output_tokens"] for r in per)
        assert run["completed_output_tokens"] == sum(r["output_tokens"] for r in per if r["error_kind"] is None)
        assert run["prompt_tokens"] == sum(r["prompt_tokens"] or 0 for r in per)
        assert run["duration_s"] > 0
        assert run["output_tokens_per_s"] == pytest.approx(run["output_tokens"] / run["duration_s"])
        assert run["requests_per_s"] == pytest.approx(reqs["completed"] / run["duration_s"])
        for key in ("ttft_s", "itl_s", "e2e_s", "request_tokens_per_s"):
            if run[key]:
                _ordered(run[key])
        for r in per:
            assert r["start_s"] >= 0 and r["e2e_s"] >= 0 and r["output_tokens"] >= 0
            if r["error_kind"] is None:
                assert r["finish_reason"] is not None
                assert r["output_tokens"] == 0 or 0 <= r["ttft_s"] <= r["e2e_s"]
                assert r["output_tokens"] <= r["max_tokens"]
                assert r["start_s"] + r["e2e_s"] <= run["duration_s"] + 1e-6
    levels = {(r["endpoint"], r["mode"], r["concurrency"] or r["rate"]) for r in doc["runs"]}
    assert len(doc["summary"]) == len(levels)


@pytest.fixture(scope="module")
def stub(server: ServerProcess) -> Iterator[StubServer]:
    proxy = StubServer(server.url, MODEL, resolve_model(MODEL).path)
    yield proxy
    proxy.close()


def test_concurrency_sweep_json_table_and_plots(server: ServerProcess, tmp_path: Path) -> None:
    out = _slm("bench", server.url, "--concurrency", "1,3", "--requests", "3", "--max-tokens", "8",
               "--warmup", "1", "--pid", str(server.proc.pid), "-o", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert json.loads((tmp_path / "bench.json").read_text()) == doc
    assert_consistent(doc)
    assert not doc["partial"]
    assert [r["concurrency"] for r in doc["runs"]] == [1, 3]
    for run in doc["runs"]:
        assert run["requests"] == {"sent": 3, "completed": 3, "failed": 0}
        assert run["token_sources"] == {"usage": 3}
        assert run["resources"]["peak_rss_bytes"] > 50 * 2**20 and run["resources"]["cpu_time_s"] > 0
    assert doc["endpoints"][0]["model"] == MODEL
    assert "| c=3 |" in (tmp_path / "bench.md").read_text()
    for png in ("bench_throughput_ttft.png", "bench_latency_cdf.png"):
        assert (tmp_path / png).read_bytes().startswith(PNG)


def test_rate_mode_fixed_lengths_two_endpoints_interleaved(server: ServerProcess, tmp_path: Path) -> None:
    out = _slm("bench", f"a={server.url}", f"b={server.url}/v1", "--rate", "8", "--requests", "1",
               "--workload", "fixed", "--prompt-tokens", "24", "--max-tokens", "6", "--repeats", "2",
               "--warmup", "0", "-o", str(tmp_path), "--name", "rate", "--no-plots", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert_consistent(doc)
    assert [(r["endpoint"], r["repeat"]) for r in doc["runs"]] == [("a", 0), ("b", 0), ("b", 1), ("a", 1)]
    assert {r["mode"] for r in doc["runs"]} == {"rate"} and doc["config"]["ignore_eos"] is True
    assert all(r["per_request"][0]["prompt_tokens"] > 24 for r in doc["runs"])
    assert [row["repeats"] for row in doc["summary"]] == [2, 2]
    assert not list(tmp_path.glob("*.png"))


def test_prompt_file_and_compare(server: ServerProcess, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "Say hi."}\n\n{"messages": [{"role": "user", "content": "Count to 3."}], '
                       '"max_tokens": 5}\n')
    for name in ("a", "b"):
        out = _slm("bench", server.url, "--prompts", str(prompts), "--max-tokens", "4", "--concurrency", "2",
                   "--requests", "2", "--warmup", "0", "-o", str(tmp_path), "--name", name, "--no-plots")
        assert out.returncode == 0, out.stderr
        assert "| c=2 |" in out.stdout
    doc = json.loads((tmp_path / "a.json").read_text())
    assert sorted(r["max_tokens"] for r in doc["runs"][0]["per_request"]) == [4, 5]
    out = _slm("bench", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows[0]["level"] == 2 and rows[0]["ratios"]["output_tokens_per_s"] > 0
    table = _slm("bench", "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert "tok/s B/A" in table.stdout


@pytest.fixture(scope="module")
def ollama_url(server: ServerProcess, stub: StubServer) -> str:
    """slmkit's own Ollama API once it serves one; until then the Ollama-shaped relay stub."""
    try:
        if httpx.get(f"{server.url}/api/tags", timeout=5).status_code == 200:
            return server.url
    except httpx.HTTPError:
        pass
    return stub.url


def test_ollama_api_mode(ollama_url: str, tmp_path: Path) -> None:
    out = _slm("bench", f"ollama+{ollama_url}", "--concurrency", "2", "--requests", "2", "--max-tokens", "6",
               "--warmup", "0", "-o", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert_consistent(doc)
    assert doc["endpoints"][0]["api"] == "ollama" and doc["endpoints"][0]["url"].endswith("/api/chat")
    run = doc["runs"][0]
    assert run["requests"]["completed"] == 2 and run["token_sources"] == {"usage": 2}
    for r in run["per_request"]:
        assert r["prompt_tokens"] > 0
        timing = r["server_timing"]
        assert timing["total_duration_s"] >= timing["eval_duration_s"] >= 0
        assert timing["total_duration_s"] <= r["e2e_s"]


def test_tokens_counted_by_server_tokenizer_without_usage(stub: StubServer, tmp_path: Path) -> None:
    out = _slm("bench", stub.url, "--concurrency", "1", "--requests", "2", "--max-tokens", "6", "--warmup", "0",
               "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert_consistent(doc)
    assert doc["runs"][0]["token_sources"] == {"tokenizer": 2}
    assert all(0 < r["output_tokens"] <= 6 for r in doc["runs"][0]["per_request"])


def test_server_errors_are_counted_by_kind(server: ServerProcess) -> None:
    out = _slm("bench", f"{server.url}#no-such-model", "--requests", "2", "--warmup", "0", "--json")
    assert out.returncode == 0, out.stderr
    run = json.loads(out.stdout)["runs"][0]
    assert run["requests"] == {"sent": 2, "completed": 0, "failed": 2}
    assert run["errors"] == {"http_404": 2} and "no-such-model" in run["error_examples"]["http_404"]


def test_unreachable_url_writes_partial_result(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    out = _slm("bench", url, "--requests", "2", "-o", str(tmp_path))
    assert out.returncode == 1
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "cannot reach" in out.stderr
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["partial"] is True and "cannot reach" in doc["partial_reason"]
    assert doc["runs"] == [] and doc["endpoints"][0]["problem"]


@pytest.mark.parametrize("content, needle", [('{"prompt": "ok"}\nnot json\n{"max_tokens": 3}\n', "line 2"),
                                             ("", "no prompts")])
def test_bad_prompt_file_is_one_line_error(tmp_path: Path, content: str, needle: str) -> None:
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(content)
    out = _slm("bench", "http://127.0.0.1:9", "--prompts", str(prompts))
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_ctrl_c_stops_and_writes_partial(server: ServerProcess, tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "slmkit", "bench", server.url, "--duration", "120",
                             "--concurrency", "2", "--max-tokens", "8", "--warmup", "0", "-o", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        watched = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while not any(c.raddr and c.raddr.port == server.port for c in watched.net_connections()):
            assert time.monotonic() < deadline and proc.poll() is None, "bench never connected"
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["partial"] is True and doc["partial_reason"] == "interrupted"
    assert doc["runs"] and doc["runs"][0]["interrupted"] is True
    assert doc["runs"][0]["duration_s"] < 100
    assert_consistent(doc)


def test_engine_bench_in_process(tmp_path: Path) -> None:
    out = _slm("bench", "--engine", "llamacpp", "--model", MODEL, "--batch-sizes", "1,2", "--prompt-tokens", "16",
               "--gen-tokens", "4", "--repeats", "1", "--threads", "1", "-o", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["schema"] == "slmkit.engine-bench/1"
    assert [r["batch_size"] for r in doc["results"]] == [1, 2]
    for row in doc["results"]:
        assert row["pp_tokens_per_s"] > 0 and row["tg_tokens_per_s"] > 0
        assert row["tg_tokens_per_s_per_sequence"] == pytest.approx(row["tg_tokens_per_s"] / row["batch_size"])
    assert (tmp_path / "bench_engine.png").read_bytes().startswith(PNG)


def test_engine_bench_needs_a_model() -> None:
    out = _slm("bench", "--engine", "llamacpp")
    assert out.returncode != 0 and "--model" in out.stderr and "Traceback" not in out.stderr


def test_wrong_api_is_named(server: ServerProcess, tmp_path: Path) -> None:
    out = _slm("bench", f"ollama+{server.url}/no-such-prefix", "--requests", "1", "-o", str(tmp_path))
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "did not answer as an ollama server: HTTP 404 on /no-such-prefix/api/tags" in out.stderr
    assert json.loads((tmp_path / "bench.json").read_text())["partial"] is True
