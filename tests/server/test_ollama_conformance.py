"""Ollama conformance with the real `ollama` SDK and the embedded model (issue 15, items 3-11).
The blob upload and `create` with files are in test_ollama_store.py (they change a store)."""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

from tests.conftest import EMBED_MODEL, MODEL
from tests.helpers import ServerProcess

OPTS = {"temperature": 0, "num_predict": 8, "seed": 1}
HELLO = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
# ~40 turns of ~45 tokens: far over the test server's 1024-token context
HISTORY = [{"role": "user" if i % 2 == 0 else "assistant",
            "content": f"Turn {i}: " + "the quick brown fox jumps over the lazy dog " * 4} for i in range(40)]


def test_a_long_conversation_is_truncated(ollama_client: ollama.Client, server: ServerProcess) -> None:
    messages = [{"role": "system", "content": "You are brief."}, *HISTORY, *HELLO]
    small = {**OPTS, "num_ctx": 384}  # a short prompt after truncation: quick on a busy machine
    resp = ollama_client.chat(model=MODEL, messages=messages, options=small)
    assert resp.done and resp.message.content.strip()
    assert resp.prompt_eval_count + resp.eval_count <= 384
    refused = httpx.post(f"{server.url}/api/chat", json={"model": MODEL, "messages": messages, "stream": False,
                                                          "truncate": False, "options": OPTS}, timeout=120)
    assert refused.status_code == 400 and "context length" in refused.json()["error"]
    long = ollama_client.generate(model=MODEL, prompt=" ".join(m["content"] for m in HISTORY) + " Say hi.",
                                  options=small)
    assert long.done and long.prompt_eval_count + long.eval_count <= 384


def test_openai_keeps_context_length_exceeded(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=[*HISTORY, *HELLO],  # type: ignore[list-item]
                                       max_tokens=8)
    assert info.value.code == "context_length_exceeded"


def test_the_final_streamed_object_is_empty(ollama_client: ollama.Client) -> None:
    chat = list(ollama_client.chat(model=MODEL, messages=HELLO, options=OPTS, stream=True))
    assert chat[-1].done and chat[-1].message.content == "" and chat[-1].eval_count
    assert not chat[-2].done and chat[-2].message.content
    gen = list(ollama_client.generate(model=MODEL, prompt="Name a color.", options=OPTS, stream=True))
    assert gen[-1].done and gen[-1].response == "" and gen[-1].context and gen[-2].response


def test_think_is_refused_in_ollamas_words(ollama_client: ollama.Client) -> None:
    for call in (lambda: ollama_client.chat(model=MODEL, messages=HELLO, think=True),
                 lambda: ollama_client.generate(model=MODEL, prompt="hi", think=True)):
        with pytest.raises(ollama.ResponseError) as info:
            call()
        assert info.value.status_code == 400 and info.value.error == f'"{MODEL}" does not support thinking'
    assert ollama_client.chat(model=MODEL, messages=HELLO, think=False, options=OPTS).done


def test_raw_has_no_context_and_an_empty_prompt_loads(ollama_client: ollama.Client) -> None:
    raw = ollama_client.generate(model=MODEL, prompt="<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                                 raw=True, options=OPTS)
    assert raw.done and not raw.context
    for kwargs in ({}, {"system": "Be brief."}):
        loaded = ollama_client.generate(model=MODEL, **kwargs)  # type: ignore[arg-type]
        assert loaded.done and loaded.done_reason == "load" and loaded.response == ""


def test_null_fields_mean_default(server: ServerProcess) -> None:
    body = {"model": MODEL, "messages": [*HELLO, {"role": "assistant", "content": None, "tool_calls": [
        {"function": {"name": "lookup", "arguments": {"q": "France"}}}]}, {"role": "tool", "content": "Paris"}],
        "stream": None, "options": None, "format": None, "keep_alive": None}
    resp = httpx.post(f"{server.url}/api/chat", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/x-ndjson")  # stream: null streams


def test_head_routes(server: ServerProcess) -> None:
    for path in ("/api/version", "/api/tags", "/"):
        assert httpx.head(f"{server.url}{path}", timeout=30).status_code == 200


def test_embed_dimensions_and_empty_input(ollama_client: ollama.Client) -> None:
    full = ollama_client.embed(model=EMBED_MODEL, input=["a cat", "a dog"])
    short = ollama_client.embed(model=EMBED_MODEL, input=["a cat", "a dog"], dimensions=64)
    for long, cut in zip(full.embeddings, short.embeddings, strict=True):
        scale = sum(v * v for v in long[:64]) ** 0.5
        assert len(cut) == 64 and list(cut) == pytest.approx([v / scale for v in long[:64]], abs=1e-5)
    assert ollama_client.embed(model=EMBED_MODEL, input=[]).embeddings == []
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.embed(model=EMBED_MODEL, input="x", dimensions=1000)
    assert info.value.status_code == 400


def test_push_is_not_supported(ollama_client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.push(MODEL)
    assert info.value.status_code == 400 and "not supported" in info.value.error
