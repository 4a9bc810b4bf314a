"""README.md runs as written: every ```bash and ```python block, in order, in a fresh SLM_HOME,
with `make run`'s server (`slm serve`) standing on a free port for 127.0.0.1:8080. Only the Hub
pull is skipped (no network here); `make run` / `make test` themselves are what this runs under.
Every command gets SLM_ENGINE__THREADS=1: on the shared test machine two llama.cpp threads wait
for each other at every step and generation crawls (see docs/models.md, the speed estimate)."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.examples.readme import ROOT
from tests.helpers import ServerProcess, free_port

README = ROOT / "README.md"
SKIPPED = ("slm pull ",)  # needs the Hugging Face Hub
MAKE_BLOCK = "make run"  # the block of the two commands: this test runs inside `make test`
SERVE = re.compile(r"^(\.venv/bin/slm serve\b.*)$", re.MULTILINE)


def blocks() -> list[tuple[str, str]]:
    """(language, text) of README's bash and python blocks, in order."""
    text = README.read_text(encoding="utf-8")
    return [(lang, body) for lang, body in re.findall(r"```(bash|python)\n(.*?)```", text, flags=re.DOTALL)
            if MAKE_BLOCK not in body]


def _strip_comment(line: str) -> str:
    return line.split("  #", 1)[0].rstrip() if not line.startswith("#") else ""


def _bash(body: str, ports: dict[str, int]) -> str:
    """The block for this machine: its ports, loopback only, no Hub pull; each `slm serve` runs
    until its /health answers and is then stopped (SIGTERM: it drains and exits)."""
    for old, new in ports.items():
        body = body.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}").replace(f"--port {old}", f"--port {new}")
    body = body.replace("--host 0.0.0.0", "--host 127.0.0.1")
    lines = []
    for line in body.splitlines():
        if any(skip in line for skip in SKIPPED):
            continue
        command = _strip_comment(line) if line.startswith(".venv/") or line.startswith("echo ") else line
        if SERVE.match(command):
            port = re.search(r"--port (\d+)", command)
            assert port, f"a README serve line without --port would take 8080: {line}"
            url = f"http://127.0.0.1:{port.group(1)}/health"
            command = (f"{command} > serve-{port.group(1)}.log 2>&1 & pid=$!\n"
                       f"for i in $(seq 1 600); do curl -sf {url} >/dev/null && break; "
                       "kill -0 $pid || { cat serve-*.log; exit 1; }; sleep 0.2; done\n"
                       f"curl -sf {url}\nkill -TERM $pid; wait $pid")
        lines.append(command)
    return "set -euo pipefail\n" + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[list[tuple[str, subprocess.CompletedProcess[str]]]]:
    home = tmp_path_factory.mktemp("readme-home")
    work = tmp_path_factory.mktemp("readme-work")
    (work / ".venv" / "bin").mkdir(parents=True)
    for name, argv in (("slm", f'"{sys.executable}" -m slmkit'), ("python", f'"{sys.executable}"')):
        wrapper = work / ".venv" / "bin" / name
        wrapper.write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    server = ServerProcess("--threads", "1", env={"SLM_HOME": str(home)})  # `make run`
    ports = {"8080": server.port, "8081": free_port(), "8082": free_port()}
    env = {**os.environ, "SLM_HOME": str(home), "SLM_URL": server.url, "COLUMNS": "200", "SLM_ENGINE__THREADS": "1"}
    results = []
    try:
        for index, (language, body) in enumerate(blocks()):
            if language == "bash":
                argv = ["bash", "-c", _bash(body, ports)]
            else:
                script = work / f"block{index}.py"
                script.write_text(body.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}"))
                argv = [str(work / ".venv" / "bin" / "python"), str(script)]
            done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600,
                                  stdin=subprocess.DEVNULL)
            results.append((body, done))
            if done.returncode != 0:
                break
        yield results
    finally:
        server.close()


def test_every_readme_block_runs(readme_run: list[tuple[str, subprocess.CompletedProcess[str]]]) -> None:
    assert len(readme_run) == len(blocks())
    for body, done in readme_run:
        assert done.returncode == 0, f"{body}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, done.stderr


def test_readme_blocks_say_what_the_readme_says(readme_run: list[tuple[str, subprocess.CompletedProcess[str]]]
                                                ) -> None:
    out = {body.split("\n", 1)[0]: done for body, done in readme_run}
    python_api = next(d for b, d in readme_run if "slmkit.load(" in b)
    assert "5" in python_api.stdout  # "What is 2 + 3?"
    run_block = next(d for b, d in readme_run if "slm ps" in b)
    assert "smollm2-135m-instruct" in run_block.stdout and "stopped smollm2-135m-instruct" in run_block.stdout
    choose = next(d for b, d in readme_run if "slm recommend" in b)
    assert "recommended: slm pull" in choose.stdout and "created pirate" in choose.stdout
    operate = next(d for b, d in readme_run if "slm keys create" in b)
    assert "turns on authentication for every server" in operate.stderr
    assert out  # every block ran
