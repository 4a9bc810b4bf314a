"""examples/batch: the README's command against the real server, interrupted and resumed."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema

from tests.examples.readme import (
    ROOT,
    example_argv,
    example_env,
    one_line_error,
    readme_commands,
    run_example,
    scratch,
)
from tests.helpers import ServerProcess, free_port

README = ROOT / "examples" / "batch" / "README.md"
PROGRAM = "examples/batch/extract.py"
SAMPLE = ROOT / "examples" / "batch" / "sample.jsonl"
SCHEMA = json.loads((ROOT / "examples" / "batch" / "schema.json").read_text())
MODEL = "smollm2-135m-instruct"
BROKEN_LINE = 7  # the sample's deliberately broken line


def requests_served(server: ServerProcess) -> float:
    """Requests the chat model has admitted, read once nothing runs or waits any more."""
    deadline = time.monotonic() + 60
    while True:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        busy = sum(float(v) for v in re.findall(rf'^slm_requests_(?:running|waiting){{model="{MODEL}"}} (\S+)$',
                                                text, re.M))
        if busy == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    # one observation per request admitted, whether it finished or was cancelled
    return sum(float(v) for v in re.findall(rf'^slm_request_prompt_tokens_count{{model="{MODEL}"}} (\S+)$', text, re.M))


def results(path: Path) -> list[dict[str, Any]]:
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), "a results file holds whole lines only"
    return [json.loads(line) for line in raw.splitlines()]


def wait_for_lines(path: Path, count: int, proc: subprocess.Popen[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {count} lines (exit {proc.poll()})")


def test_readme_run_interrupted_then_resumed(server: ServerProcess, tmp_path: Path) -> None:
    [argv] = readme_commands(README, PROGRAM)
    folder = scratch(tmp_path, "examples")
    out = folder / argv[3]
    first = subprocess.Popen(example_argv(argv), cwd=folder, env=example_env(server.base_url), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_lines(out, 3, first)
    first.send_signal(signal.SIGINT)
    _, err1 = first.communicate(timeout=60)
    assert first.returncode == 130, err1
    assert "interrupted by SIGINT" in err1 and "run the same command again to resume" in err1
    done_first = {r["line"] for r in results(out)}
    lines = [n for n, raw in enumerate(SAMPLE.read_text().splitlines(), 1) if raw.strip()]
    assert 3 <= len(done_first) < len(lines), done_first

    before = requests_served(server)
    second = run_example(argv, folder, server.base_url)
    assert second.returncode == 0, second.stderr
    asked = len([n for n in lines if n not in done_first and n != BROKEN_LINE])
    assert requests_served(server) - before == asked  # no finished line was requested again
    assert f"{len(done_first)} of {len(lines)} lines were done before" in second.stdout

    records = results(out)
    assert sorted(r["line"] for r in records) == lines  # every line once, none twice
    ids = {r["line"]: r["id"] for r in records}
    assert ids[1] == "t-001" and ids[BROKEN_LINE] is None
    broken = next(r for r in records if r["line"] == BROKEN_LINE)
    assert broken["error"]["kind"] == "input" and broken["error"]["message"].startswith("not JSON")
    assert f"line {BROKEN_LINE}: input error: not JSON" in err1 + second.stderr  # reported as it happens
    for record in records:
        if record["line"] != BROKEN_LINE:
            assert "data" in record, record
            jsonschema.validate(record["data"], SCHEMA)


def test_kill_leaves_whole_lines_and_a_torn_line_is_dropped(server: ServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:2]))
    out = tmp_path / "out.jsonl"
    argv = ["python", PROGRAM, str(source), str(out), "--schema", "examples/batch/schema.json", "--concurrency", "1"]
    proc = subprocess.Popen(example_argv(argv), cwd=ROOT, env=example_env(server.base_url), text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_lines(out, 1, proc)
    proc.kill()
    proc.wait()
    done = {r["line"] for r in results(out)}
    # A kill in the middle of a write cannot be timed from outside: append what it would leave.
    with out.open("ab") as torn:
        torn.write(b'{"line": 2, "id": "t-0')
    before = requests_served(server)
    resumed = run_example([*argv, "--json"], ROOT, server.base_url)
    assert resumed.returncode == 0, resumed.stderr
    assert "dropped a torn last line" in resumed.stderr
    assert requests_served(server) - before == 2 - len(done)
    summary = json.loads(resumed.stdout)
    assert summary["torn_line_dropped"] is True and summary["done_before"] == len(done)
    assert sorted(r["line"] for r in results(out)) == [1, 2]


def test_request_errors_are_retried_and_limit_stops_early(server: ServerProcess, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(SAMPLE.read_text().splitlines(keepends=True)[:3]))
    out = tmp_path / "out.jsonl"
    # an earlier run whose request for line 2 failed (the server cannot be made to answer 500 on cue)
    out.write_text(json.dumps({"line": 1, "id": "t-001", "data": {"customer": "Maria Lopez", "product": "laptop",
                                                                  "sentiment": "negative", "urgent": True}}) + "\n" +
                   json.dumps({"line": 2, "id": "t-002", "error": {"kind": "request", "message": "500"}}) + "\n")
    argv = ["python", PROGRAM, str(source), str(out), "--schema", "examples/batch/schema.json", "--limit", "1",
            "--json"]
    before = requests_served(server)
    done = run_example(argv, ROOT, server.base_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["retried"] == 1
    assert requests_served(server) - before == 1
    assert [(r["line"], "data" in r) for r in results(out)] == [(1, True), (2, True)]


def test_bad_input_is_one_line_and_exit_1(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"

    def extract(schema: Path, source: Path = SAMPLE, base_url: str = server.base_url, *extra: str
                ) -> subprocess.CompletedProcess[str]:
        return run_example(["python", PROGRAM, str(source), str(out), "--schema", str(schema), *extra], ROOT,
                           base_url)

    not_json = tmp_path / "broken.json"
    not_json.write_text('{"type": "object", ')
    one_line_error(extract(not_json), "extract.py", "is not JSON")
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "no-such-type"}}}))
    one_line_error(extract(invalid), "extract.py", "is not a valid JSON schema")
    one_line_error(extract(tmp_path / "absent.json"), "extract.py", "cannot read the schema")
    schema = ROOT / "examples" / "batch" / "schema.json"
    one_line_error(extract(schema, tmp_path / "absent.jsonl"), "extract.py", "no such input file")
    one_line_error(extract(schema, SAMPLE, f"http://127.0.0.1:{free_port()}/v1"), "extract.py",
                   "cannot reach the server")
    one_line_error(extract(schema, SAMPLE, server.base_url, "--model", "no-such-model"), "extract.py",
                   "does not serve the model no-such-model")
    assert not out.exists()
    out.write_text("these are someone else's notes\n")
    one_line_error(extract(schema), "extract.py", "is not a result line")
