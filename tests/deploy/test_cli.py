"""`slm deploy` and `slm deploy check` as a user runs them; bad input is one line, before anything is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def slm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", "deploy", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    text = " ".join(proc.stderr.split())
    assert text.startswith("error:"), proc.stderr
    for fragment in fragments:
        assert fragment in text


@pytest.mark.parametrize(("args", "fragments"), [
    (["helm", "-m", "smollm2-135m-instruct"], ["unknown target 'helm'", "docker, compose, k8s, nginx"]),
    (["k8s", "-m", "smollm2-135m-instruct", "--engine", "tgi"], ["unknown engine 'tgi'", "llamacpp, vllm"]),
    (["k8s", "-m", "my-finetune-7b"], ["the catalog cannot size 'my-finetune-7b'"]),
    (["k8s", "-m", "smollm2-135m-instruct", "--replicas", "0"], ["--replicas must be at least 1"]),
    (["k8s", "-m", "qwen3-8b", "--memory", "2G"], ["qwen3-8b", "needs", "budget is 2.0 GiB"]),
    (["k8s", "-m", "qwen3-32b", "--engine", "vllm", "--memory", "24G"], ["GPU memory", "24.0 GiB per GPU"]),
    (["k8s", "-m", "bitnet-b1.58-2b-4t"], ["bitnet-b1.58-2b-4t needs"]),
    (["nginx", "-m", "qwen3-1.7b", "--engine", "vllm"], ["for vLLM use k8s"]),
    (["k8s", "-m", "smollm2-135m-instruct", "--ctx", "100000"], ["exceeds"]),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    out = tmp_path / "out"
    proc = slm(*args, "--out", str(out), cwd=tmp_path)
    assert_one_line_error(proc, *fragments)
    assert list(tmp_path.iterdir()) == []


def test_existing_directory_needs_force(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    proc = slm("k8s", "-m", "smollm2-135m-instruct", "--out", str(out))
    assert_one_line_error(proc, "already exists", "--force")
    assert [p.name for p in out.iterdir()] == ["mine.txt"]
    proc = slm("k8s", "-m", "smollm2-135m-instruct", "--out", str(out), "--force", "--replicas", "2", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["options"]["replicas"] == 2 and report["memory_request"] > 0
    assert not (out / "mine.txt").exists() and (out / "base" / "deployment.yaml").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["k8s"]  # no staging directory left behind


def test_nginx_upstreams_and_check(tmp_path: Path) -> None:
    out = tmp_path / "lb"
    proc = slm("nginx", "-m", "smollm2-135m-instruct", "--replicas", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    text = (out / "slmkit.conf").read_text()
    for port in (8080, 8081, 8082):
        assert f"server 127.0.0.1:{port} max_fails=1 fail_timeout=10s;" in text
    for directive in ("least_conn;", "proxy_buffering off;", "proxy_read_timeout 600s;"):
        assert directive in text
    check = slm("check", str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "nginx -t" in check.stdout


def test_check_reports_an_edit_that_breaks_a_manifest(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    assert slm("k8s", "-m", "smollm2-135m-instruct", "--out", str(out)).returncode == 0
    good = slm("check", str(out), "--json")
    assert good.returncode == 0
    assert {r["status"] for r in json.loads(good.stdout)} == {"ok", "skipped"}
    path = out / "base" / "deployment.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["replicas"] = "three"
    path.write_text(yaml.safe_dump(doc))
    bad = slm("check", str(out))
    assert_one_line_error(bad, "checks failed")
    assert "failed" in bad.stdout and "Deployment/slmkit" in bad.stdout
