"""POST /v1/embeddings through the real openai SDK; vectors match sentence-transformers."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import EMBED_MODEL, MODEL
from tests.convert.test_bert_gguf import SENTENCES, reference_vectors
from tests.helpers import ServerProcess
from tests.openapi import validate


def test_embeddings_match_the_reference(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model=EMBED_MODEL, input=SENTENCES[:5], encoding_format="float")
    validate("CreateEmbeddingResponse", resp.model_dump(exclude_unset=True))
    assert [d.index for d in resp.data] == list(range(5))
    ours = np.asarray([d.embedding for d in resp.data])
    cosines = (ours * reference_vectors(SENTENCES[:5])).sum(axis=1)
    assert cosines.min() >= 0.99, cosines
    assert resp.usage.prompt_tokens == resp.usage.total_tokens > 20
    assert resp.model == EMBED_MODEL


def test_single_string_alias_and_base64(client: openai.OpenAI, server: ServerProcess) -> None:
    floats = client.embeddings.create(model="all-minilm", input="hello world", encoding_format="float")
    assert len(floats.data) == 1 and len(floats.data[0].embedding) == 384
    raw = httpx.post(f"{server.base_url}/embeddings", json={"model": EMBED_MODEL, "input": "hello world",
                                                            "encoding_format": "base64"}).json()
    validate("CreateEmbeddingResponse", floats.model_dump(exclude_unset=True))  # the spec knows floats only
    decoded = np.frombuffer(base64.b64decode(raw["data"][0]["embedding"]), dtype="<f4")
    assert decoded == pytest.approx(np.asarray(floats.data[0].embedding), abs=1e-6)
    # the SDK asks for base64 by default and decodes it itself
    assert client.embeddings.create(model=EMBED_MODEL, input="hello world").data[0].embedding == pytest.approx(
        floats.data[0].embedding, abs=1e-6)


def test_token_id_input(client: openai.OpenAI, server: ServerProcess) -> None:
    ids = httpx.post(f"{server.url}/tokenize", json={"model": EMBED_MODEL, "content": "hello world"}).json()["tokens"]
    by_ids = client.embeddings.create(model=EMBED_MODEL, input=[ids], encoding_format="float")
    by_text = client.embeddings.create(model=EMBED_MODEL, input="hello world", encoding_format="float")
    assert by_ids.data[0].embedding == pytest.approx(by_text.data[0].embedding, abs=1e-6)


@pytest.mark.parametrize(("body", "param"), [
    ({"model": EMBED_MODEL, "input": "x", "dimensions": 512}, "dimensions"),
    ({"model": EMBED_MODEL, "input": "word " * 600}, "input"),
    ({"model": EMBED_MODEL, "input": []}, "input"),
    ({"model": EMBED_MODEL, "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": MODEL, "input": "x"}, "model"),
    ({"model": "nope", "input": "x"}, "model"),
])
def test_bad_embedding_requests(server: ServerProcess, body: dict[str, object], param: str) -> None:
    resp = httpx.post(f"{server.base_url}/embeddings", json=body, timeout=60)
    assert resp.status_code in (400, 404), resp.text
    assert resp.json()["error"]["param"] == param


def test_dimensions_shorten_and_renormalize(client: openai.OpenAI) -> None:
    resp = client.embeddings.create(model=EMBED_MODEL, input="x", dimensions=384, encoding_format="float")
    assert len(resp.data[0].embedding) == 384
    short = client.embeddings.create(model=EMBED_MODEL, input="x", dimensions=64, encoding_format="float")
    cut = short.data[0].embedding
    assert len(cut) == 64 and sum(v * v for v in cut) == pytest.approx(1.0, abs=1e-4)
    scale = sum(v * v for v in resp.data[0].embedding[:64]) ** 0.5
    assert cut == pytest.approx([v / scale for v in resp.data[0].embedding[:64]], abs=1e-5)
