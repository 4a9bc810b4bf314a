"""POST /tokenize and /detokenize."""

from __future__ import annotations

import httpx

from tests.conftest import EMBED_MODEL, MODEL
from tests.helpers import ServerProcess


def test_round_trip(server: ServerProcess) -> None:
    text = "Hello, world! Ça va? 🙂"
    out = httpx.post(f"{server.url}/tokenize", json={"model": MODEL, "content": text}).json()
    assert out["count"] == len(out["tokens"]) > 3 and out["max_model_len"] == 1024 and out["model"] == MODEL
    back = httpx.post(f"{server.url}/detokenize", json={"model": MODEL, "tokens": out["tokens"]}).json()
    assert back["content"] == text


def test_special_tokens_and_pieces(server: ServerProcess) -> None:
    plain = httpx.post(f"{server.url}/tokenize", json={"prompt": "<|im_start|>user", "with_pieces": True}).json()
    assert plain["tokens"][0] == {"id": 1, "piece": "<|im_start|>"}  # parsed as one special token
    assert "".join(p["piece"] for p in plain["tokens"]) == "<|im_start|>user"


def test_add_special_for_an_embedding_model(server: ServerProcess) -> None:
    url = f"{server.url}/tokenize"
    with_special = httpx.post(url, json={"model": EMBED_MODEL, "content": "hello", "with_pieces": True}).json()
    without = httpx.post(url, json={"model": EMBED_MODEL, "content": "hello", "add_special": False}).json()
    assert [p["piece"] for p in with_special["tokens"]] == ["[CLS]", " hello", "[SEP]"]
    assert without["count"] == 1 and with_special["max_model_len"] == 256


def test_bad_requests(server: ServerProcess) -> None:
    missing = httpx.post(f"{server.url}/tokenize", json={"model": MODEL})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "content"
    bad = httpx.post(f"{server.url}/detokenize", json={"model": MODEL, "tokens": [10**9]})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tokens"
    unknown = httpx.post(f"{server.url}/tokenize", json={"model": "nope", "content": "x"})
    assert unknown.status_code == 404
