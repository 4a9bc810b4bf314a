"""The Ollama API through the real `ollama` SDK (and httpx for the raw shapes)."""

from __future__ import annotations

import json

import httpx
import jsonschema
import ollama
import pytest

from tests.conftest import EMBED_MODEL, MODEL
from tests.helpers import ServerProcess

OPTS = {"temperature": 0, "num_predict": 12, "seed": 1}
HELLO = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def test_chat_not_streamed(ollama_client: ollama.Client) -> None:
    resp = ollama_client.chat(model=MODEL, messages=HELLO, options=OPTS)
    assert resp.message.role == "assistant"
    assert "paris" in resp.message.content.lower()
    assert resp.done and resp.done_reason in ("stop", "length")
    assert resp.prompt_eval_count > 5 and 0 < resp.eval_count <= 12
    for name in ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration"):
        assert isinstance(getattr(resp, name), int)
    assert resp.total_duration >= resp.eval_duration > 0


def test_chat_streamed_matches_unstreamed(ollama_client: ollama.Client) -> None:
    parts = list(ollama_client.chat(model=MODEL, messages=HELLO, options=OPTS, stream=True))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    text = "".join(p.message.content for p in parts)
    whole = ollama_client.chat(model=MODEL, messages=HELLO, options=OPTS)
    assert text == whole.message.content
    assert parts[-1].eval_count == whole.eval_count


def test_generate_streamed_and_not(ollama_client: ollama.Client) -> None:
    resp = ollama_client.generate(model=MODEL, prompt="Name a primary color.", options=OPTS)
    assert resp.response.strip() and resp.done
    parts = list(ollama_client.generate(model=MODEL, prompt="Name a primary color.", options=OPTS, stream=True))
    assert "".join(p.response for p in parts) == resp.response
    assert parts[-1].done and parts[-1].eval_count == resp.eval_count
    ended = parts[-1].done_reason == "stop"  # eval_count counts the end token, as Ollama's does; context omits it
    assert parts[-1].context and len(parts[-1].context) == parts[-1].prompt_eval_count + parts[-1].eval_count - ended


def test_generate_system_and_raw(ollama_client: ollama.Client) -> None:
    resp = ollama_client.generate(model=MODEL, prompt="Say hi.", system="You answer in French.", options=OPTS)
    raw = ollama_client.generate(model=MODEL, prompt="<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n",
                                 raw=True, options=OPTS)
    assert resp.response.strip() and raw.response.strip()
    assert raw.prompt_eval_count < resp.prompt_eval_count  # no default system prompt in raw mode


def test_options_stop_and_num_predict(ollama_client: ollama.Client) -> None:
    full = ollama_client.generate(model=MODEL, prompt="Count from 1 to 10 with commas.",
                                  options={"temperature": 0, "num_predict": 30})
    assert full.eval_count <= 30
    cut = ollama_client.generate(model=MODEL, prompt="Count from 1 to 10 with commas.",
                                 options={"temperature": 0, "num_predict": 30, "stop": ["4"]})
    assert "4" not in cut.response and cut.done_reason == "stop"


def test_format_json_and_schema(ollama_client: ollama.Client) -> None:
    ask = [{"role": "user", "content": 'Reply with a JSON object with one key, "color", set to a color.'}]
    resp = ollama_client.chat(model=MODEL, messages=ask, format="json", options={"temperature": 0, "num_predict": 40})
    assert resp.done_reason == "stop"
    assert isinstance(json.loads(resp.message.content), dict)
    schema = {"type": "object", "properties": {"color": {"enum": ["red", "green", "blue"]},
                                               "count": {"type": "integer"}}, "required": ["color", "count"]}
    resp = ollama_client.chat(model=MODEL, messages=ask, format=schema, options={"temperature": 0, "num_predict": 40})
    assert resp.done_reason == "stop"
    jsonschema.validate(json.loads(resp.message.content), schema)


def test_embed_and_legacy_embeddings(ollama_client: ollama.Client) -> None:
    resp = ollama_client.embed(model=EMBED_MODEL, input=["hello world", "good morning"])
    assert len(resp.embeddings) == 2 and len(resp.embeddings[0]) == 384
    assert resp.prompt_eval_count > 4
    single = ollama_client.embed(model="all-minilm", input="hello world")
    assert single.embeddings[0] == pytest.approx(resp.embeddings[0], abs=1e-5)
    legacy = ollama_client.embeddings(model=EMBED_MODEL, prompt="hello world")
    assert legacy.embedding == pytest.approx(resp.embeddings[0], abs=1e-5)


def test_embed_truncation(server: ServerProcess) -> None:
    long = "word " * 600
    ok = httpx.post(f"{server.url}/api/embed", json={"model": EMBED_MODEL, "input": long}, timeout=60)
    assert ok.status_code == 200 and len(ok.json()["embeddings"][0]) == 384
    bad = httpx.post(f"{server.url}/api/embed", json={"model": EMBED_MODEL, "input": long, "truncate": False},
                     timeout=60)
    assert bad.status_code == 400 and "context length" in bad.json()["error"]


def test_list_show_ps(ollama_client: ollama.Client) -> None:
    names = [m.model for m in ollama_client.list().models]
    assert f"{MODEL}:latest" in names and f"{EMBED_MODEL}:latest" in names  # name:tag, as Ollama lists
    entry = next(m for m in ollama_client.list().models if m.model == f"{MODEL}:latest")
    assert entry.size > 1_000_000 and len(entry.digest) == 64
    assert entry.details.family == "llama" and entry.details.quantization_level == "Q4_1"
    show = ollama_client.show(MODEL)
    assert "completion" in show.capabilities and "tools" in show.capabilities
    assert "<|im_start|>" in show.template
    assert show.modelinfo["llama.block_count"] == 30
    assert show.details.parameter_size == "135M"
    assert ollama_client.show(EMBED_MODEL).capabilities == ["embedding"]
    ollama_client.chat(model=MODEL, messages=HELLO, options={"num_predict": 1})
    running = {(m.model or "").removesuffix(":latest"): m for m in ollama_client.ps().models}
    assert MODEL in running
    assert running[MODEL].size > entry.size  # weights plus KV cache
    assert running[MODEL].context_length == 1024 and running[MODEL].expires_at is not None


def test_version_and_root(server: ServerProcess) -> None:
    assert httpx.get(f"{server.url}/api/version").json()["version"]
    root = httpx.get(server.url)
    assert root.status_code == 200 and root.text == "Ollama is running"
    assert root.headers["content-type"].startswith("text/plain")
    assert httpx.head(server.url).status_code == 200
    page = httpx.get(server.url, headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html") and "<script" in page.text


def test_bodies_are_json_only(server: ServerProcess) -> None:
    """A body without a content type is read as JSON (scripts); a form type is refused (415), so no
    web page can post one to a local server (issue 17)."""
    body = json.dumps({"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}})
    resp = httpx.post(f"{server.url}/api/generate", content=body, timeout=60)
    assert resp.status_code == 200 and resp.json()["done"] is True
    form = httpx.post(f"{server.url}/api/generate", content=body,
                      headers={"content-type": "application/x-www-form-urlencoded"}, timeout=60)
    assert form.status_code == 415 and "application/json" in form.json()["error"]


BAD = [
    ("/api/chat", {"model": "nope", "messages": HELLO}, 404, "model 'nope' not found"),
    ("/api/generate", {"model": "nope", "prompt": "x"}, 404, "model 'nope' not found"),
    ("/api/embed", {"model": "nope", "input": "x"}, 404, "model 'nope' not found"),
    ("/api/show", {"model": "nope"}, 404, "model 'nope' not found"),
    ("/api/chat", {"model": MODEL, "messages": HELLO, "options": {"temperature": "hot"}}, 400, "options.temperature"),
    ("/api/generate", {"model": MODEL, "prompt": "x", "options": {"num_predict": 1.5}}, 400, "options.num_predict"),
    ("/api/generate", {"model": MODEL, "prompt": "x", "images": ["aGk="]}, 400, "images"),
    ("/api/chat", {"model": MODEL, "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}, 400,
     "images"),
    ("/api/chat", {"model": MODEL, "messages": HELLO, "format": {"type": "nonsense"}}, 400, "format"),
    ("/api/chat", {"model": MODEL, "messages": HELLO, "keep_alive": "soon"}, 400, "keep_alive"),
    ("/api/chat", {"model": EMBED_MODEL, "messages": HELLO}, 400, "embedding model"),
    ("/api/embed", {"model": MODEL, "input": "x"}, 400, "does not support embeddings"),
    ("/api/chat", {"model": MODEL, "messages": HELLO, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "strange"}}}}}]}, 400, "tools.0"),
]


@pytest.mark.parametrize(("path", "body", "status", "needle"), BAD)
def test_bad_input_has_ollama_shape(server: ServerProcess, path: str, body: dict[str, object], status: int,
                                    needle: str) -> None:
    resp = httpx.post(f"{server.url}{path}", json={**body, "stream": False}, timeout=60)
    assert resp.status_code == status, resp.text
    assert set(resp.json()) == {"error"}
    assert needle in resp.json()["error"]


def test_sdk_raises_response_error_for_unknown_model(ollama_client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.chat(model="nope", messages=HELLO)
    assert info.value.status_code == 404
