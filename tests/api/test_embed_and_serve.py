"""slmkit.load of an embedding model, and slmkit.serve (both APIs, real SDKs)."""

from __future__ import annotations

import math
import socket

import httpx
import ollama
import openai
import pytest

import slmkit
from slmkit.errors import ContextLengthExceeded, InvalidRequest, ModelNotFound


def test_embedding_model() -> None:
    with slmkit.load("all-minilm-l6-v2") as embedder:
        assert embedder.kind == "embedding"
        cat, kitten, tax = embedder.embed(["a cat sleeps", "a kitten naps", "income tax return forms"])
        assert len(cat) == 384 and math.isclose(sum(x * x for x in cat), 1.0, rel_tol=1e-4)
        similarity = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
        assert similarity(cat, kitten) > similarity(cat, tax)
        assert embedder.embed("one text") and len(embedder.embed("one text")) == 1
        with pytest.raises(ContextLengthExceeded):
            embedder.embed("word " * 1000, truncate=False)
        assert len(embedder.embed("word " * 1000)[0]) == 384  # cut to the context by default
        with pytest.raises(InvalidRequest, match="embedding model"):
            embedder.chat("hi")
        with pytest.raises(InvalidRequest):
            embedder.embed([])


def test_serve_in_a_thread_answers_both_apis() -> None:
    with slmkit.serve(parallel=2, ctx_size=512, threads=2) as server:
        assert server.running and server.port > 0 and server.base_url == f"{server.url}/v1"
        client = openai.OpenAI(base_url=server.base_url, api_key="none")
        reply = client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=5, temperature=0,
                                               messages=[{"role": "user", "content": "Hello"}])
        assert reply.choices[0].message.content and reply.usage and reply.usage.completion_tokens <= 5
        chat = ollama.Client(host=server.url).chat(model="smollm2-135m-instruct", options={"num_predict": 4},
                                                    messages=[{"role": "user", "content": "Hi"}])
        assert chat.message.content is not None and chat.done
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=2)


def test_serve_with_a_key_and_errors() -> None:
    with slmkit.serve(parallel=1, ctx_size=256, threads=2, api_key="sekret") as server:
        assert httpx.get(f"{server.url}/v1/models", timeout=5).status_code == 401
        ok = httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer sekret"}, timeout=5)
        assert ok.status_code == 200
        with pytest.raises(OSError), socket.socket() as taken:
            taken.bind(("127.0.0.1", server.port))
    with pytest.raises(ModelNotFound):
        slmkit.serve("no-such-model-anywhere")
    with pytest.raises(InvalidRequest, match="parallel"):
        slmkit.serve(parallel=0)
