"""examples/webservice: the README's command and requests, end to end on the embedded model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "webservice"
README = (EXAMPLE / "README.md").read_text()
COMMAND = "python examples/webservice/app.py --port 8000"


def readme_requests() -> dict[str, dict[str, object]]:
    """The JSON bodies of the README's curl commands, by path."""
    found = re.findall(r"localhost:8000(/\w+) .*?\\\n\s+-d '(.*?)'", README, flags=re.DOTALL)
    return {path: json.loads(body) for path, body in found}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    assert COMMAND in README
    port = free_port()
    argv = [sys.executable, *COMMAND.split()[1:-1], str(port), "--threads", "2", "--parallel", "2"]
    log = tmp_path_factory.mktemp("webservice") / "log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_readme_requests(service: str) -> None:
    bodies = readme_requests()
    assert set(bodies) == {"/classify", "/extract", "/summarize"}
    label = httpx.post(f"{service}/classify", json=bodies["/classify"], timeout=120)
    assert label.status_code == 200 and label.json()["label"] in ("positive", "negative")
    data = httpx.post(f"{service}/extract", json=bodies["/extract"], timeout=120)
    assert data.status_code == 200
    assert isinstance(data.json()["data"]["order"], int) and isinstance(data.json()["data"]["city"], str)
    summary = httpx.post(f"{service}/summarize", json=bodies["/summarize"], timeout=120)
    assert summary.status_code == 200 and summary.json()["summary"]


@pytest.mark.parametrize(("path", "body"), [
    ("/classify", {"text": "x", "labels": ["only-one"]}),
    ("/classify", {"text": "x", "labels": ["a", "a"]}),
    ("/summarize", {"text": ""}),
    ("/extract", {"text": "x", "schema": {"type": "object", "properties": {"a": {"type": "nonsense"}}}}),
    ("/extract", {"text": "x", "schema": {"type": "array"}}),
])
def test_bad_requests_are_422(service: str, path: str, body: dict[str, object]) -> None:
    assert httpx.post(f"{service}{path}", json=body, timeout=30).status_code == 422


def test_context_overflow_maps_to_413(service: str) -> None:
    answer = httpx.post(f"{service}/summarize", json={"text": "word " * 3000}, timeout=60)
    assert answer.status_code == 413 and "context length" in answer.json()["error"]


def test_timeout_maps_to_504(tmp_path: Path) -> None:
    """With a tiny timeout the call is cancelled and the client gets 504, and the service keeps working."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        import app as webservice  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(EXAMPLE))
    from fastapi.testclient import TestClient

    import slmkit

    with slmkit.load(parallel=1, ctx_size=1024, threads=2) as model:
        client = TestClient(webservice.create_app(model, timeout=0.001))
        answer = client.post("/summarize", json={"text": "A long text. " * 20, "max_words": 200})
        assert answer.status_code == 504 and "too long" in answer.json()["error"]
        deadline = time.monotonic() + 120  # the slot is freed at the engine's next step, slow on a loaded machine
        while model.stats()["running"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert model.stats()["running"] == 0


def test_unknown_model_exits_with_one_line() -> None:
    done = subprocess.run([sys.executable, "examples/webservice/app.py", "--model", "no-such-model"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error:") and "Traceback" not in done.stderr
