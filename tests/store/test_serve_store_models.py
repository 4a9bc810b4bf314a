"""Store models on the real server: Gemma 3 270M as a second chat model, quantized files, a profile."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from slmkit.store.embedded import EMBEDDED
from tests.helpers import ServerProcess
from tests.store.test_hub_pull import one_line_error, slm
from tests.store.test_modelfile import CHATML_GO

SMOL = "smollm2-135m-instruct"
QUANTS = ("q8_0", "q4_0")
MODELFILE = f'''FROM {SMOL}
TEMPLATE """{CHATML_GO}"""
SYSTEM """You answer in very few words."""
PARAMETER num_predict 4
PARAMETER temperature 0
MESSAGE user Hello
MESSAGE assistant Hi.
'''


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store-serve") / "home"


@pytest.fixture(scope="module")
def reports(home: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for quant in QUANTS:
        done = slm("quantize", SMOL, "--type", quant, "--allow-requantize", "--threads", "2", "--json", home=home)
        assert done.returncode == 0, done.stderr
        out[quant] = json.loads(done.stdout)
    return out


@pytest.fixture(scope="module")
def served(home: Path, reports: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[ServerProcess]:
    pulled = slm("pull", "gemma-3-270m", home=home)
    assert pulled.returncode == 0, pulled.stderr
    modelfile = tmp_path_factory.mktemp("modelfile") / "Modelfile"
    modelfile.write_text(MODELFILE)
    created = slm("create", "terse", "-f", str(modelfile), home=home)
    assert created.returncode == 0, created.stderr
    models = [SMOL, "gemma-3-270m", *(f"{SMOL}:{q}" for q in QUANTS), "terse"]
    log = tmp_path_factory.mktemp("logs") / "server.log"
    proc = ServerProcess(*[a for m in models for a in ("--model", m)], "--parallel", "1", "--ctx-size", "512",
                         "--threads", "2", env={"SLM_HOME": str(home)}, log=log)
    yield proc
    proc.close()


@pytest.fixture(scope="module")
def client(served: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.base_url, api_key="unused", max_retries=0, timeout=120)


def _ask(client: openai.OpenAI, model: str, text: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], seed=1,
                                          **kwargs)


def test_quantize_reports_match_the_files(reports: dict[str, dict[str, Any]]) -> None:
    source = EMBEDDED[SMOL].path().stat().st_size
    for quant, report in reports.items():
        assert report["type"] == quant and report["source_type"] == "q4_1"
        assert report["size_before"] == source
        assert report["size_after"] == Path(report["path"]).stat().st_size
        assert report["name"] == f"{SMOL}:{quant}" and report["seconds"] > 0
    assert reports["q8_0"]["bpw_after"] > reports["q8_0"]["bpw_before"] > reports["q4_0"]["bpw_after"]
    assert reports["q8_0"]["size_after"] > source > reports["q4_0"]["size_after"]


def test_requantizing_needs_the_flag(home: Path) -> None:
    message = one_line_error(slm("quantize", SMOL, "--type", "q8_0", home=home))
    assert "--allow-requantize" in message and "already quantized" in message


def test_quantized_models_are_served(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list().data}
    assert {f"{SMOL}:{q}" for q in QUANTS} <= ids
    for quant in QUANTS:
        reply = _ask(client, f"{SMOL}:{quant}", "What is the capital of France?", max_tokens=12, temperature=0)
        assert reply.model == f"{SMOL}:{quant}"
        assert reply.choices[0].message.content and reply.usage.completion_tokens > 0


def test_gemma_is_served_as_a_second_chat_model(client: openai.OpenAI) -> None:
    reply = _ask(client, "gemma-3-270m", "Name a color.", max_tokens=16, temperature=0)
    assert reply.model == "gemma-3-270m"
    assert reply.choices[0].message.content and "<end_of_turn>" not in reply.choices[0].message.content
    assert reply.usage.prompt_tokens > 5
    again = _ask(client, SMOL, "Name a color.", max_tokens=8, temperature=0)  # the first model still answers
    assert again.model == SMOL and again.choices[0].message.content


def test_profile_defaults_apply_and_requests_override_them(client: openai.OpenAI) -> None:
    prompt = "Count from 1 to 50, separated by commas."
    plain = _ask(client, SMOL, prompt, max_tokens=4, temperature=0)
    profiled = _ask(client, "terse", prompt)  # no max_tokens: the profile's num_predict 4 applies
    assert profiled.usage.completion_tokens <= 4 and profiled.choices[0].finish_reason == "length"
    # its SYSTEM, MESSAGE history and TEMPLATE are in the prompt
    assert profiled.usage.prompt_tokens > plain.usage.prompt_tokens
    longer = _ask(client, "terse", prompt, max_tokens=12)  # the request's own value wins
    assert longer.usage.completion_tokens > 4


@pytest.mark.parametrize("path", ["/api/chat", "/api/generate"])
def test_profile_defaults_apply_on_the_ollama_doors(served: ServerProcess, path: str) -> None:
    """The same profile through Ollama's routes (they ignored PARAMETERs before the one hallway)."""
    import httpx

    body: dict[str, Any] = {"model": "terse", "stream": False}
    prompt = "Count from 1 to 50, separated by commas."
    body |= {"messages": [{"role": "user", "content": prompt}]} if path == "/api/chat" else {"prompt": prompt}
    done = httpx.post(f"{served.url}{path}", json=body, timeout=120).json()
    assert done["eval_count"] <= 4 and done["done_reason"] == "length"
    longer = httpx.post(f"{served.url}{path}", json={**body, "options": {"num_predict": 12}}, timeout=120).json()
    assert longer["eval_count"] > 4
