"""Run the shell steps of a GitHub Actions workflow locally, in order, as the runner would.

Steps that need GitHub are skipped by the convention examples/ci/slm-quality.yml documents:
``uses:`` actions, and steps with ``if: env.SLM_CI_LOCAL != 'true'``. ``if: always()`` steps
run even after a failure; any other step is skipped once one has failed. ``run:`` scripts go
to ``bash --noprofile --norc -eo pipefail``, GitHub's default shell on Linux, with the job's
``env`` plus the caller's overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

LOCAL_ONLY_ON_GITHUB = "env.SLM_CI_LOCAL != 'true'"


@dataclass
class StepResult:
    name: str
    status: str  # passed | failed | skipped
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""


def load_job(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    (job,) = doc["jobs"].values()
    return job  # type: ignore[no-any-return]


def step_name(step: dict[str, Any]) -> str:
    return str(step.get("name") or step.get("uses") or step["run"].splitlines()[0])


def run_steps(path: Path, cwd: Path, overrides: dict[str, str], only: set[str] | None = None) -> list[StepResult]:
    """Every step of the workflow's one job (or only the named ones), with ``slm`` on PATH."""
    job = load_job(path)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           **{k: str(v) for k, v in job.get("env", {}).items()}, "SLM_CI_LOCAL": "true", **overrides}
    results: list[StepResult] = []
    failed = False
    for step in job["steps"]:
        name = step_name(step)
        condition = step.get("if")
        if condition not in (None, "always()", LOCAL_ONLY_ON_GITHUB):
            raise ValueError(f"step {name!r}: the local runner does not know the condition {condition!r}")
        runs = ("run" in step and condition != LOCAL_ONLY_ON_GITHUB and (only is None or name in only)
                and (condition == "always()" or not failed))
        if not runs:
            results.append(StepResult(name, "skipped"))
            continue
        script = step["run"]
        if "${{" in script:
            raise ValueError(f"step {name!r} uses a GitHub expression; read settings from env instead")
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script], cwd=cwd,
                              env={**env, **{k: str(v) for k, v in step.get("env", {}).items()}},
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600)
        failed = failed or done.returncode != 0
        results.append(StepResult(name, "passed" if done.returncode == 0 else "failed", done.returncode,
                                  done.stdout, done.stderr))
    return results


def report(results: list[StepResult]) -> str:
    """All steps and their output, for an assertion message."""
    return "\n".join(f"--- {r.name}: {r.status} (rc {r.returncode})\n{r.stdout}{r.stderr}" for r in results)
