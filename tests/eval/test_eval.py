"""`slm eval` on the embedded model: perplexity, drift (zero vs itself, positive vs q4_0), tasks."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import llama_cpp as ll
import psutil
import pytest

from slmkit.eval.perplexity import windows
from slmkit.eval.tasks import builtin_suite, check, parse_suite
from slmkit.store.resolve import resolve_model
from tests.conftest import MODEL

PNG = b"\x89PNG\r\n\x1a\n"
SMALL = ("--window", "128", "--stride", "64", "--max-tokens", "320", "--threads", "1")


def _slm(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def q4_0(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded Q4_1 model requantized to Q4_0 by llama.cpp."""
    out = tmp_path_factory.mktemp("quant") / "smollm2-q4_0.gguf"
    params = ll.llama_model_quantize_default_params()
    params.ftype = ll.LLAMA_FTYPE_MOSTLY_Q4_0
    params.allow_requantize = True
    params.nthread = 1
    assert ll.llama_model_quantize(str(resolve_model(MODEL).path).encode(), str(out).encode(), params) == 0
    return out


def test_perplexity_is_finite_and_plot_written(tmp_path: Path) -> None:
    out = _slm("eval", MODEL, "--no-tasks", *SMALL, "-o", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    ppl = doc["models"][0]["perplexity"]
    assert math.isfinite(ppl["perplexity"]) and 1 < ppl["perplexity"] < 1000
    assert ppl["scored_tokens"] == ppl["tokens"] - 1 == 319
    assert doc["config"]["text"].startswith("coriolanus.txt")
    assert (tmp_path / "eval.png").read_bytes().startswith(PNG)
    assert "| smollm2-135m-instruct |" in (tmp_path / "eval.md").read_text()


def test_drift_is_zero_against_itself_and_positive_against_q4_0(q4_0: Path) -> None:
    model = str(resolve_model(MODEL).path)
    out = _slm("eval", model, model, str(q4_0), "--no-tasks", *SMALL, "--json")
    assert out.returncode == 0, out.stderr
    ref, same, quant = json.loads(out.stdout)["models"]
    assert same["drift"]["kl_mean"] == 0.0 and same["drift"]["kl_max"] == 0.0
    assert same["drift"]["top1_agreement"] == 1.0 and same["drift"]["perplexity_ratio"] == 1.0
    assert quant["drift"]["kl_mean"] > 0 and quant["drift"]["top1_agreement"] < 1.0
    assert quant["drift"]["perplexity_ratio"] != 1.0
    assert quant["size_bytes"] < ref["size_bytes"]
    assert ref["perplexity"]["perplexity"] == pytest.approx(same["perplexity"]["perplexity"])


def test_kv_types_drift_from_the_f16_cache(tmp_path: Path) -> None:
    """--kv-types: the same weights with each KV cache type; f16 is the reference, quantized caches drift."""
    out = _slm("eval", MODEL, "--kv-types", "f16,q8_0,q4_0", "--no-tasks", *SMALL, "-o", str(tmp_path), "--json")
    assert out.returncode == 0, out.stderr
    ref, q8, q4 = json.loads(out.stdout)["models"]
    assert [m["kv_type"] for m in (ref, q8, q4)] == ["f16", "q8_0", "q4_0"]
    assert ref["file"] == q8["file"] == q4["file"] and q8["name"] == f"{MODEL} (KV q8_0)"
    assert 0 < q8["drift"]["kl_mean"] < q4["drift"]["kl_mean"]  # fewer bits, more drift
    assert q8["drift"]["top1_agreement"] > 0.9
    assert f"| {MODEL} (KV q4_0) |" in (tmp_path / "eval.md").read_text()
    bad = _slm("eval", MODEL, MODEL, "--kv-types", "f16,q8_0", "--no-tasks", *SMALL)
    assert bad.returncode != 0 and "one GGUF model" in bad.stderr
    bad = _slm("eval", MODEL, "--kv-types", "f16,q5_1", "--no-tasks", *SMALL)
    assert bad.returncode != 0 and "--kv-types takes" in bad.stderr


def test_task_suite_reports_pass_rate_per_task() -> None:
    out = _slm("eval", MODEL, "--no-perplexity", "--threads", "1", "--json")
    assert out.returncode == 0, out.stderr
    tasks = json.loads(out.stdout)["models"][0]["tasks"]
    cases = builtin_suite()
    expected = {c.task for c in cases}
    assert set(tasks["pass_rates"]) == expected | {"all"}
    assert tasks["pass_rates"]["all"]["total"] == len(cases) == len(tasks["cases"])
    for name in expected:
        rate = tasks["pass_rates"][name]
        assert rate["total"] == sum(c.task == name for c in cases)
        assert rate["rate"] == pytest.approx(rate["passed"] / rate["total"])
        assert rate["passed"] == sum(c["passed"] for c in tasks["cases"] if c["task"] == name)
    stops = {c.id: c.stop for c in cases if c.stop}
    for case in tasks["cases"]:
        assert case["passed"] == (not case["failed_checks"])
        for stop in stops.get(case["id"], ()):
            assert stop not in case["output"]


def test_user_suite_file(tmp_path: Path) -> None:
    suite = tmp_path / "suite.jsonl"
    suite.write_text("\n".join(json.dumps(c) for c in [
        {"id": "capital", "task": "geo", "prompt": "What is the capital of France? One word.",
         "expect": {"regex": "(?i)paris"}},
        {"id": "impossible", "task": "geo", "prompt": "Say anything.", "max_tokens": 4,
         "expect": {"exact": "this exact sentence will not come out"}},
    ]) + "\n")
    out = _slm("eval", MODEL, "--no-perplexity", "--suite", str(suite), "--threads", "1", "--json")
    assert out.returncode == 0, out.stderr
    tasks = json.loads(out.stdout)["models"][0]["tasks"]
    assert tasks["pass_rates"]["geo"] == {"passed": 1, "total": 2, "rate": 0.5}
    assert [c["failed_checks"] for c in tasks["cases"]] == [[], ["exact"]]


@pytest.mark.parametrize("args, needle", [
    (("--no-perplexity", "--suite", "BAD"), "line 2"),
    (("--no-tasks", "--text", "SHORT", "--window", "512"), "fewer than one window"),
    (("--no-tasks", "--text", "/nonexistent/file.txt"), "cannot read"),
])
def test_bad_input_is_one_line_error(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x", "expect": {"regex": "x"}}\n{"prompt": "y"}\n')
    (tmp_path / "short.txt").write_text("Too short to fill a window.")
    paths = {"BAD": str(tmp_path / "bad.jsonl"), "SHORT": str(tmp_path / "short.txt")}
    out = _slm("eval", MODEL, *(paths.get(a, a) for a in args), "--threads", "1")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_windows_score_every_token_once() -> None:
    for n, size, stride in [(1000, 128, 64), (128, 128, 64), (300, 100, 100), (257, 64, 17)]:
        scored = [p for w in windows(n, size, stride) for p in range(w.first_scored, w.end)]
        assert scored == list(range(1, n))
        for w in windows(n, size, stride):
            assert w.end - w.start <= size and w.start < w.first_scored


def test_checks() -> None:
    case = parse_suite('{"prompt": "p", "expect": {"exact": "Yes", "not_regex": "no"}}', "t")[0]
    assert check(case, " yes. ") == [] and check(case, "yes no") == ["exact", "not_regex"]
    schema = parse_suite('{"prompt": "p", "expect": {"json_schema": {"type": "object", "required": ["a"]}}}', "t")[0]
    assert check(schema, 'Sure: ```json\n{"a": 1}\n```') == [] and check(schema, '{"b": 1}') == ["json_schema"]
    assert check(schema, "no json here") == ["json_schema"]


def test_ctrl_c_writes_partial_result(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "slmkit", "eval", MODEL, "--window", "64", "--threads", "1",
                             "-o", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        watched = psutil.Process(proc.pid)
        deadline = time.monotonic() + 60
        while watched.memory_info().rss < 150 * 2**20:  # the model is loaded and scoring
            assert time.monotonic() < deadline and proc.poll() is None, "eval never started scoring"
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    doc = json.loads((tmp_path / "eval.json").read_text())
    assert doc["partial"] is True and doc["partial_reason"] == "interrupted"
