"""examples/ci/slm-quality.yml: its shell steps, run in order against this checkout, pass on the
embedded model and fail the build when a threshold is set impossible."""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from slmkit.bench.report import load_document
from slmkit.eval.tasks import load_suite
from tests.examples.readme import ROOT, readme_lines
from tests.examples.workflow import StepResult, load_job, report, run_steps, step_name
from tests.helpers import free_port

WORKFLOW = ROOT / "examples" / "ci" / "slm-quality.yml"
GITHUB_ONLY = ["actions/checkout@v4", "actions/setup-python@v5", "Install slmkit", "actions/upload-artifact@v4"]
QUALITY, SPEED, GATE, STOP = ("Quality gate (slm eval)", "Speed (slm bench)", "Regression gate (slm bench compare)",
                              "Stop slm serve")


def _by_name(results: list[StepResult]) -> dict[str, StepResult]:
    return {r.name: r for r in results}


def _stopped(temp: Path) -> bool:
    """The server the workflow started is gone (the stop step ran); kills a leftover anyway."""
    pid = int((temp / "slm-serve.pid").read_text())
    try:
        proc = psutil.Process(pid)
        proc.wait(timeout=30)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        proc.kill()
        return False
    return True


def _workflow(tmp_path: Path, repo: Path, workflow: Path = WORKFLOW,
              **overrides: str) -> tuple[list[StepResult], Path]:
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    env = {"RUNNER_TEMP": str(temp), "PORT": str(free_port()), **overrides}
    results = run_steps(workflow, repo, env)
    assert _stopped(temp), report(results)
    return results, temp


def _user_repo(tmp_path: Path) -> Path:
    """A scratch repository set up with the README's commands (slmkit's checkout at slmkit/)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "slmkit").symlink_to(ROOT)
    for command in readme_lines("ci"):
        done = subprocess.run(["bash", "-eo", "pipefail", "-c", command], cwd=repo, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stderr)
    return repo


@pytest.fixture(scope="module")
def passing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[StepResult], Path]]:
    # The quality gate is deterministic (greedy decoding) and runs with the workflow's own
    # thresholds. Speed depends on the machine and its load, and tests never fail on wall-clock
    # times: this run asks only for 5% of the baseline's throughput (the gate's arithmetic is
    # tested against fixed documents in tests/bench/test_compare_gate.py).
    tmp_path = tmp_path_factory.mktemp("ci-pass")
    repo = _user_repo(tmp_path)
    yield _workflow(tmp_path, repo, repo / ".github" / "workflows" / "slm-quality.yml", BENCH_FAIL_BELOW="0.05")


def test_workflow_passes_on_the_embedded_model(passing: tuple[list[StepResult], Path]) -> None:
    results, temp = passing
    steps = _by_name(results)
    assert [r.name for r in results if r.status == "skipped"] == GITHUB_ONLY, report(results)
    assert all(r.status == "passed" for r in results if r.status != "skipped"), report(results)
    eval_doc = json.loads((temp / "slm-report" / "eval.json").read_text())
    job_env = load_job(WORKFLOW)["env"]
    gates = {g["gate"]: g for g in eval_doc["gates"]}
    for gate, setting in (("min_pass_rate", "MIN_PASS_RATE"), ("max_perplexity", "MAX_PERPLEXITY")):
        assert gates[gate]["passed"] and gates[gate]["threshold"] == float(job_env[setting]), gates
    cases = eval_doc["models"][0]["tasks"]["cases"]
    assert len(cases) == len(load_suite(ROOT / "examples" / "ci" / "suite.jsonl"))
    assert (temp.parent / "repo" / ".github" / "slm" / "bench-baseline.json").is_file()
    bench = load_document(temp / "slm-report" / "bench.json")
    assert bench["summary"] and all(row["failed"] == 0 for row in bench["summary"])
    assert "no regression below 0.05" in steps[GATE].stderr


def _bench_options(argv: list[str]) -> list[str]:
    """`slm bench` arguments without the URL, where results go, and the model's value."""
    out, skip = [], False
    for arg in argv[2:]:
        if skip:
            skip = False
        elif arg in ("--output-dir", "--name", "--model"):
            skip = True
        elif "://" not in arg:
            out.append(arg)
    return out


def test_baseline_matches_the_bench_step() -> None:
    """The committed baseline was recorded with the workflow's own bench options."""
    baseline = load_document(ROOT / "examples" / "ci" / "bench-baseline.json")
    speed = next(s for s in load_job(WORKFLOW)["steps"] if step_name(s) == SPEED)["run"]
    assert _bench_options(shlex.split(speed.replace("\\\n", " "))) == _bench_options(baseline["command"])
    assert len(baseline["summary"]) == 1 and baseline["summary"][0]["failed"] == 0


def test_impossible_quality_threshold_fails_the_build(tmp_path: Path) -> None:
    # in slmkit's checkout this time, reading the example's files where they are
    results, _ = _workflow(tmp_path, ROOT, SLM_CI_DIR="examples/ci", MAX_PERPLEXITY="1")  # no model is perfect
    steps = _by_name(results)
    assert steps[QUALITY].status == "failed" and steps[QUALITY].returncode == 1, report(results)
    assert steps[QUALITY].stderr.strip().splitlines()[-1].startswith("error: quality gate failed:")
    assert "above --max-perplexity 1" in steps[QUALITY].stderr
    assert "Traceback" not in steps[QUALITY].stderr
    assert steps[SPEED].status == steps[GATE].status == "skipped"  # later steps do not run...
    assert steps[STOP].status == "passed"  # ...but the server is stopped


def test_impossible_speed_threshold_fails_the_build(passing: tuple[list[StepResult], Path]) -> None:
    """The regression step again, on the passing run's bench result, demanding 100x the baseline."""
    _, temp = passing
    results = run_steps(WORKFLOW, temp.parent / "repo", {"RUNNER_TEMP": str(temp), "BENCH_FAIL_BELOW": "100"},
                        only={GATE})
    gate = _by_name(results)[GATE]
    assert gate.status == "failed" and gate.returncode == 1, report(results)
    assert "performance regression below --fail-below 100" in gate.stderr
    assert "Traceback" not in gate.stderr


def test_unknown_condition_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "wf.yml"
    bad.write_text("jobs:\n  j:\n    steps:\n      - run: echo hi\n        if: github.event_name == 'push'\n")
    with pytest.raises(ValueError, match="does not know the condition"):
        run_steps(bad, tmp_path, {})


def test_wait_step_saw_ready(passing: tuple[list[StepResult], Path]) -> None:
    """The wait step ended on /ready's answer, before the steps that need the server."""
    results, _ = passing
    ready = json.loads(_by_name(results)["Wait for /ready"].stdout)
    assert ready["status"] == "ready" and ready["model"] == load_job(WORKFLOW)["env"]["MODEL"]
