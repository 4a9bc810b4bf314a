"""examples/langchain: ChatOpenAI / ChatOllama / OpenAIEmbeddings / OllamaEmbeddings against a
real server, run with the README's commands."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.examples.readme import ROOT, readme_lines, with_url
from tests.helpers import ServerProcess, free_port

SCRIPT = "examples/langchain/langchain_slmkit.py"
WEATHER_ARGS = {"type": "object", "properties": {"city": {"type": "string", "minLength": 1}},
                "required": ["city"], "additionalProperties": False}


@pytest.fixture(scope="module")
def run(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """The README's command, against the test's server, writing the report to a temporary folder."""
    (command,) = [c for c in readme_lines("langchain") if c.startswith(f"python {SCRIPT}")]
    argv = shlex.split(with_url(command, server.url))
    assert argv[-2:] == ["--report", "report.json"], command
    argv[-1] = str(tmp_path_factory.mktemp("langchain") / "report.json")
    done = subprocess.run([sys.executable, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def report(run: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return json.loads(Path(run.args[-1]).read_text())  # type: ignore[no-any-return]


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_chat_and_streaming(report: dict[str, Any], api: str) -> None:
    part = report[api]
    assert part["reply"].strip()
    assert len([c for c in part["stream_chunks"] if c]) > 1, part["stream_chunks"]
    assert part["streamed_text"] == "".join(part["stream_chunks"]) and part["streamed_text"].strip()


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_structured_output(report: dict[str, Any], api: str) -> None:
    place = report[api]["structured"]
    jsonschema.validate(place, {"type": "object", "properties": {"city": {"type": "string"},
                                                                 "country": {"type": "string", "minLength": 1}},
                                "required": ["city", "country"]})
    assert "paris" in place["city"].lower()


def test_openai_tool_call_round_trip(report: dict[str, Any]) -> None:
    tools = report["openai"]["tools"]
    assert tools["tool_calls"], tools  # tool_choice names the tool: the grammar makes the call certain
    for call in tools["tool_calls"]:
        assert call["name"] == "get_weather" and call["id"].startswith("call_")
        jsonschema.validate(call["args"], WEATHER_ARGS)
    assert all("sunny" in result for result in tools["tool_results"])
    assert tools["final_answer"].strip()


def test_ollama_tool_call(report: dict[str, Any]) -> None:
    tools = report["ollama"]["tools"]
    assert tools["tool_calls"], tools
    for call in tools["tool_calls"]:
        assert call["name"] == "get_weather"
        jsonschema.validate(call["args"], WEATHER_ARGS)
    assert tools["final_answer"].strip()


@pytest.mark.parametrize("api", ["openai", "ollama"])
def test_embeddings(report: dict[str, Any], api: str) -> None:
    emb = report["embeddings"][api]
    assert emb["dimensions"] == 384
    assert emb["similarity_related"] > emb["similarity_unrelated"] + 0.1, emb


def test_both_apis_embed_alike(report: dict[str, Any]) -> None:
    openai_side, ollama_side = report["embeddings"]["openai"], report["embeddings"]["ollama"]
    for key in ("similarity_related", "similarity_unrelated"):
        assert openai_side[key] == pytest.approx(ollama_side[key], abs=1e-4)


def test_printed_output(run: subprocess.CompletedProcess[str]) -> None:
    for needle in ("== openai API ==", "== ollama API ==", "structured: {'city'", "tool call: get_weather(",
                   "384 dimensions"):
        assert needle in run.stdout, run.stdout


@pytest.mark.parametrize(("url", "needle"), [
    ("not-a-url", "must be an http(s) URL"),
    ("http://127.0.0.1:{port}", "no slmkit server answers"),
])
def test_bad_url_is_one_line(url: str, needle: str) -> None:
    done = subprocess.run([sys.executable, SCRIPT, "--url", url.format(port=free_port())], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert needle in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
