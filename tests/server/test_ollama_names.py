"""Names with the real clients on the real server (issue 15, Ollama item 1): the official
``ollama`` client and LangChain's ``ChatOllama(validate_model_on_init=True)``, which looks the
model up in /api/tags before the first request, as Open WebUI does after adding ``:latest``."""

from __future__ import annotations

import httpx
import ollama
import pytest

from tests.conftest import EMBED_MODEL, MODEL
from tests.helpers import ServerProcess

HI = [{"role": "user", "content": "Hi"}]


def test_the_ollama_client_sees_name_and_tag(ollama_client: ollama.Client) -> None:
    listed = [m.model for m in ollama_client.list().models]
    assert f"{MODEL}:latest" in listed and f"{EMBED_MODEL}:latest" in listed
    assert all(name and ":" in name for name in listed)
    for name in (MODEL, f"{MODEL}:latest", "smollm2:135m"):
        reply = ollama_client.chat(model=name, messages=HI, options={"num_predict": 2, "temperature": 0})
        assert reply.message.content is not None and reply.model == name
        assert "completion" in ollama_client.show(name).capabilities
    assert f"{MODEL}:latest" in [m.model for m in ollama_client.ps().models]
    with pytest.raises(ollama.ResponseError) as missing:
        ollama_client.chat(model="qwen3:4b", messages=HI)
    assert missing.value.status_code == 404 and "pull" in missing.value.error


@pytest.mark.parametrize("name", [MODEL, f"{MODEL}:latest"])
def test_langchain_validates_the_model_on_init(server: ServerProcess, name: str) -> None:
    chat_ollama = pytest.importorskip("langchain_ollama")
    llm = chat_ollama.ChatOllama(model=name, base_url=server.url, validate_model_on_init=True, num_predict=3,
                                 temperature=0)
    assert isinstance(llm.invoke("Hi").content, str)


def test_langchain_refuses_a_model_the_server_lacks(server: ServerProcess) -> None:
    chat_ollama = pytest.importorskip("langchain_ollama")
    with pytest.raises(ValueError, match="not found"):
        chat_ollama.ChatOllama(model="no-such-model", base_url=server.url, validate_model_on_init=True)


def test_open_webui_adds_latest_and_finds_it(server: ServerProcess) -> None:
    """Open WebUI's Ollama router: an untagged name gets ':latest', then must be among /api/tags' names."""
    tags = {m["model"] for m in httpx.get(f"{server.url}/api/tags", timeout=60).json()["models"]}
    for model_id in [m["id"] for m in httpx.get(f"{server.base_url}/models", timeout=60).json()["data"]]:
        assert (model_id if ":" in model_id else f"{model_id}:latest") in tags
    body = {"model": f"{MODEL}:latest", "messages": HI, "stream": False, "options": {"num_predict": 2}}
    assert httpx.post(f"{server.url}/api/chat", json=body, timeout=120).status_code == 200


def test_slm_ps_and_stop_take_either_form(server: ServerProcess) -> None:
    """`slm stop smollm2-135m-instruct` finds `smollm2-135m-instruct:latest` in /api/ps."""
    from click.testing import CliRunner

    from slmkit.cli.main import cli

    body = {"model": MODEL, "messages": HI, "stream": False, "options": {"num_predict": 1}}
    assert httpx.post(f"{server.url}/api/chat", json=body, timeout=120).status_code == 200
    listed = CliRunner().invoke(cli, ["ps", "--url", server.url])
    assert listed.exit_code == 0 and f"{MODEL}:latest" in listed.stdout
    stopped = CliRunner().invoke(cli, ["stop", MODEL, "--url", server.url])
    assert stopped.exit_code == 0, stopped.output
    assert httpx.post(f"{server.url}/api/chat", json=body, timeout=120).status_code == 200  # loads again
