"""`slm bench compare BASE NEW --fail-below R`: the regression gate CI relies on.

The two documents are written here with known figures, so the gate's arithmetic is checked
exactly (a real bench's figures depend on the machine's load)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slmkit.bench.report import SCHEMA


def _slm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, timeout=60)


def _doc(path: Path, **figures: Any) -> str:
    row = {"endpoint": "http://127.0.0.1:8080", "mode": "concurrency", "level": 2, "repeats": 1,
           "output_tokens_per_s": 100.0, "requests_per_s": 2.0, "ttft_p50_ms": 80.0, "ttft_p95_ms": 100.0,
           "itl_p50_ms": 10.0, "itl_p95_ms": 12.0, "e2e_p95_s": 1.5, "request_tokens_per_s_p50": 50.0,
           "peak_rss_mib": None, "completed_output_tokens": 256, "requested_output_tokens": 256, "failed": 0,
           **figures}
    path.write_text(json.dumps({"schema": SCHEMA, "summary": [row]}))
    return str(path)


@pytest.fixture
def docs(tmp_path: Path) -> tuple[str, str]:
    """A baseline and a run at 80% of its throughput and twice its time to first token."""
    return _doc(tmp_path / "base.json"), _doc(tmp_path / "new.json", output_tokens_per_s=80.0, ttft_p95_ms=200.0)


def test_within_threshold_passes(docs: tuple[str, str]) -> None:
    out = _slm("bench", "compare", *docs, "--fail-below", "0.7")
    assert out.returncode == 0, out.stderr
    assert "no regression below 0.7 of the baseline" in out.stderr
    assert "0.80x" in out.stdout  # the ratio table is still printed


def test_throughput_regression_fails(docs: tuple[str, str]) -> None:
    out = _slm("bench", "compare", *docs, "--fail-below", "0.9")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == ("error: performance regression below --fail-below 0.9: tok/s at c=2 is 0.80x "
                                  "the baseline (0.80 of its performance)")


def test_latency_regression_counts_inversely(docs: tuple[str, str]) -> None:
    # TTFT p95 doubled: half the baseline's performance
    out = _slm("bench", "compare", *docs, "--fail-below", "0.7", "--metric", "ttft_p95_ms",
               "--metric", "output_tokens_per_s")
    assert out.returncode == 1
    assert "TTFT p95 ms at c=2 is 2.00x the baseline (0.50 of its performance)" in out.stderr
    assert "tok/s" not in out.stderr  # 0.80 is above 0.7
    ok = _slm("bench", "compare", *docs, "--fail-below", "0.4", "--metric", "ttft_p95_ms")
    assert ok.returncode == 0, ok.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (("--fail-below", "0.7", "--metric", "peak_rss_mib"), "cannot gate on peak_rss_mib at c=2"),
    (("--metric", "ttft_p95_ms"), "--metric goes with --fail-below"),
    (("--fail-below", "0"), "0.0 is not in the range"),
    (("--fail-below", "0.7", "--metric", "bogus"), "Invalid value for '--metric'"),
])
def test_bad_gate_options(docs: tuple[str, str], args: tuple[str, ...], needle: str) -> None:
    out = _slm("bench", "compare", *docs, *args)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert needle in out.stderr


def test_different_workloads_are_refused_unless_forced(tmp_path: Path) -> None:
    docs = []
    for name, workload in (("mixed.json", "mixed"), ("fixed.json", "fixed")):
        path = Path(_doc(tmp_path / name))
        doc = json.loads(path.read_text())
        path.write_text(json.dumps({**doc, "config": {"workload": workload, "workload_detail": {"items": 8}}}))
        docs.append(str(path))
    out = _slm("bench", "compare", *docs)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1
    assert "different workloads (mixed vs fixed)" in out.stderr and "--force" in out.stderr
    forced = _slm("bench", "compare", *docs, "--force")
    assert forced.returncode == 0 and "1.00x" in forced.stdout


def test_an_unreachable_server_prints_no_empty_table() -> None:
    from tests.helpers import free_port

    out = _slm("bench", f"http://127.0.0.1:{free_port()}", "--requests", "1", "--warmup", "1", "--no-plots")
    assert out.returncode == 1 and "cannot reach" in out.stderr and "Traceback" not in out.stderr
    assert out.stdout.strip() == ""
