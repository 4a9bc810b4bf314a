"""`slm eval --min-pass-rate / --max-perplexity`: the quality gates CI relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slmkit.eval.gates import evaluate_gates, failure_message
from tests.conftest import MODEL

SMALL_PPL = ("--window", "128", "--stride", "64", "--max-tokens", "256", "--threads", "1")


def _slm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def half_suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One case the model passes, one no model can."""
    suite = tmp_path_factory.mktemp("gates") / "suite.jsonl"
    suite.write_text("\n".join(json.dumps(c) for c in [
        {"id": "capital", "prompt": "What is the capital of France? One word.", "expect": {"regex": "(?i)paris"}},
        {"id": "impossible", "prompt": "Say anything.", "max_tokens": 4,
         "expect": {"exact": "this exact sentence will not come out"}},
    ]) + "\n")
    return suite


def test_pass_rate_gate(half_suite: Path, tmp_path: Path) -> None:
    ok = _slm("eval", MODEL, "--no-perplexity", "--suite", str(half_suite), "--threads", "1",
              "--min-pass-rate", "0.5", "-o", str(tmp_path), "--no-plots", "--json")
    assert ok.returncode == 0, ok.stderr
    (gate,) = json.loads(ok.stdout)["gates"]
    assert gate == {"gate": "min_pass_rate", "model": MODEL, "value": 0.5, "threshold": 0.5, "passed": True,
                    "detail": "1/2 cases"}
    assert "| min_pass_rate | smollm2-135m-instruct | 50% | 0.5 | pass |" in (tmp_path / "eval.md").read_text()

    bad = _slm("eval", MODEL, "--no-perplexity", "--suite", str(half_suite), "--threads", "1",
               "--min-pass-rate", "0.6", "-o", str(tmp_path), "--no-plots")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == (f"error: quality gate failed: {MODEL}: pass rate 50% (1/2 cases), "
                                  "below --min-pass-rate 0.6")
    assert "| FAIL |" in bad.stdout  # the results are still shown...
    written = json.loads((tmp_path / "eval.json").read_text())  # ...and written
    assert written["gates"][0]["passed"] is False


def test_perplexity_gate() -> None:
    ok = _slm("eval", MODEL, "--no-tasks", *SMALL_PPL, "--max-perplexity", "10000", "--json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    ppl = doc["models"][0]["perplexity"]["perplexity"]
    assert doc["gates"][0]["passed"] and doc["gates"][0]["value"] == ppl

    bad = _slm("eval", MODEL, "--no-tasks", *SMALL_PPL, "--max-perplexity", f"{ppl * 0.99:.3f}")
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert f"perplexity {ppl:.3f}, above --max-perplexity" in bad.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (("--no-tasks", "--min-pass-rate", "0.5"), "--min-pass-rate needs the task suite"),
    (("--no-perplexity", "--max-perplexity", "20"), "--max-perplexity needs perplexity"),
    (("--min-pass-rate", "1.5"), "1.5 is not in the range"),
    (("--max-perplexity", "0.5"), "0.5 is not in the range"),
])
def test_bad_gate_options(args: tuple[str, ...], needle: str) -> None:
    out = _slm("eval", MODEL, *args)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert needle in out.stderr


def test_missing_measurement_fails_its_gate() -> None:
    doc = {"models": [{"name": "m", "tasks": None, "perplexity": None}]}
    gates = evaluate_gates(doc, 0.5, 20.0)
    assert [g["passed"] for g in gates] == [False, False]
    assert failure_message(gates) == ("quality gate failed: m: no task results, below --min-pass-rate 0.5; "
                                      "m: no perplexity, above --max-perplexity 20")
    assert failure_message([]) is None
