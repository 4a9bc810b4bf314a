"""examples/node: the README's commands (`node main.js`, `node --test`) against a real server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.examples.readme import ROOT, readme_lines, with_url
from tests.helpers import ServerProcess

NODE_DIR = ROOT / "examples" / "node"


def _run(command: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(with_url(command, url), shell=True, cwd=NODE_DIR, capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items() if k != "SLMKIT_URL"})


@pytest.fixture(scope="module")
def commands() -> dict[str, str]:
    if shutil.which("node") is None:
        pytest.fail("node is not installed: the Node example needs Node.js 20+")
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.fail("examples/node has no node_modules: run `make node-deps` (npm ci there)")
    lines = readme_lines("node")
    assert lines[0] == "npm ci"  # done by `make node-deps`
    return {"main": next(c for c in lines if "node main.js" in c), "test": next(c for c in lines if "--test" in c)}


def test_node_test_runner_passes(server: ServerProcess, commands: dict[str, str]) -> None:
    done = _run(commands["test"], server.url)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    passed = re.search(r"^[#ℹ] pass (\d+)$", output, flags=re.MULTILINE)
    failed = re.search(r"^[#ℹ] fail (\d+)$", output, flags=re.MULTILINE)
    assert passed and failed, output
    assert int(passed.group(1)) >= 6 and int(failed.group(1)) == 0, output


def test_main_streams_and_ranks(server: ServerProcess, commands: dict[str, str]) -> None:
    done = _run(commands["main"], server.url)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.rstrip().splitlines()
    assert re.fullmatch(r"\[\d+ chunks, finish_reason (stop|length), \d+ tokens\]", lines[-4]), done.stdout
    scores = [float(line.split()[0]) for line in lines[-3:]]
    assert scores == sorted(scores, reverse=True)
    assert "bread" in lines[-3], done.stdout  # the sentence about baking is the closest
