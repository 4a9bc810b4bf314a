"""Ollama conformance in process (issue 15, items 3-11): what Ollama's own server does with the
same request, through the real app and FakeEngine / FakeEmbedder."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest

from slmkit.store.embedded import EMBEDDED
from tests.inprocess import MODEL, Engines, app_client, make_key, settings

pytestmark = pytest.mark.asyncio
EMBED = "all-minilm-l6-v2"
HI = [{"role": "user", "content": "hi"}]


def _ndjson(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- 3: long inputs are truncated (the door matrix has the default per door) ------------------------------
async def test_chat_drops_the_oldest_messages_but_keeps_system(home: Path, engines: Engines) -> None:
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn{i:03d} " + "x" * 200}
             for i in range(20)]
    body = {"model": MODEL, "messages": [{"role": "system", "content": "SYSTEM-KEPT"}, *turns], "stream": False,
            "options": {"num_ctx": 1024, "num_predict": 10}}
    async with app_client(settings(home)) as client:
        r = await client.post("/api/chat", json=body)
        assert r.status_code == 200, r.text
        prompt = engines[MODEL].requests[-1].prompt
        text = engines[MODEL].detokenize(prompt)
        assert "SYSTEM-KEPT" in text and "turn019" in text and "turn000" not in text
        assert len(prompt) + 10 <= 1024 < len(prompt) + 10 + 250  # only as many turns as needed went (~240 each)
        refused = await client.post("/api/chat", json={**body, "truncate": False})
    assert refused.status_code == 400 and set(refused.json()) == {"error"}
    assert len(engines[MODEL].requests) == 1


async def test_generate_keeps_the_prompts_end(home: Path, engines: Engines) -> None:
    long = "START " + "y" * 3000 + " END"
    async with app_client(settings(home)) as client:
        raw = await client.post("/api/generate", json={"model": MODEL, "prompt": long, "raw": True,
                                                       "stream": False, "options": {"num_predict": 5}})
        assert raw.status_code == 200, raw.text
        prompt = engines[MODEL].requests[-1].prompt
        assert prompt[0] == 0 and len(prompt) == 2048 - 5  # BOS, then the end
        assert engines[MODEL].detokenize(prompt).endswith("y END") and "START" not in engines[MODEL].detokenize(prompt)
        ctx = await client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "context": [70] * 3000,
                                                       "stream": False})
        assert ctx.status_code == 200, ctx.text
        prompt = engines[MODEL].requests[-1].prompt
        assert len(prompt) + 1 <= 2048 and engines[MODEL].detokenize(prompt).rstrip().endswith("assistant")
        refused = await client.post("/api/generate", json={"model": MODEL, "prompt": long, "truncate": False,
                                                           "stream": False})
    assert refused.status_code == 400 and "context length" in refused.json()["error"]


# -- 4: the final streamed object carries no text ---------------------------------------------------
@pytest.mark.parametrize(("path", "body", "field"), [
    ("/api/generate", {"model": MODEL, "prompt": "hi"}, "response"),
    ("/api/chat", {"model": MODEL, "messages": HI}, "message"),
])
async def test_final_streamed_line_is_empty(path: str, body: dict[str, Any], field: str, home: Path,
                                            engines: Engines) -> None:
    engines.reply = "abc"
    async with app_client(settings(home)) as client:
        lines = _ndjson((await client.post(path, json=body)).text)
        whole = (await client.post(path, json={**body, "stream": False})).json()
    text = [line[field] if field == "response" else line[field]["content"] for line in lines]
    assert [line["done"] for line in lines] == [False, False, False, True]
    assert text == ["a", "b", "c", ""] and lines[-1]["done_reason"] == "stop"
    assert (whole["response"] if field == "response" else whole["message"]["content"]) == "abc"


async def test_streamed_tool_calls_come_before_the_final_line(home: Path, engines: Engines) -> None:
    from tests.server.inproc.test_door_matrix import CALL, TOOLS

    engines.reply = CALL
    async with app_client(settings(home)) as client:
        lines = _ndjson((await client.post("/api/chat", json={"model": MODEL, "messages": HI,
                                                              "tools": TOOLS})).text)
    assert lines[-1]["done"] and lines[-1]["message"] == {"role": "assistant", "content": ""}
    calls = [c for line in lines[:-1] for c in line["message"].get("tool_calls", [])]
    assert [c["function"]["name"] for c in calls] == ["get_weather"]


# -- 5: think on a model without thinking ------------------------------------------------------------
@pytest.mark.parametrize(("path", "body"), [
    ("/api/chat", {"model": MODEL, "messages": HI}),
    ("/api/generate", {"model": MODEL, "prompt": "hi"}),
    ("/api/generate", {"model": MODEL, "prompt": "hi", "raw": True}),
])
async def test_think_on_a_model_without_thinking(path: str, body: dict[str, Any], home: Path,
                                                 engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        for think in (True, "high"):
            r = await client.post(path, json={**body, "think": think, "stream": False})
            assert r.status_code == 400 and r.json() == {"error": f'"{MODEL}" does not support thinking'}
        assert (await client.post(path, json={**body, "think": False, "stream": False})).status_code == 200
        missing = await client.post(path, json={**body, "model": "nope", "think": True, "stream": False})
        assert missing.status_code == 404  # the model is looked up first, as Ollama does
    assert len(engines[MODEL].requests) == 1


# -- 6: null means "the default" ------------------------------------------------------------------------
async def test_null_means_default(home: Path, engines: Engines) -> None:
    nulls = {"stream": None, "options": None, "format": None, "keep_alive": None, "think": None,
             "truncate": None, "shift": None}
    async with app_client(settings(home)) as client:
        r = await client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "raw": None,
                                                     "system": None, "context": None, **nulls})
        assert r.status_code == 200 and _ndjson(r.text)[-1]["done"]  # stream: null streams
        history = [*HI, {"role": "assistant", "content": None, "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
                   {"role": "tool", "content": "sunny", "tool_name": None}, {"role": "user", "content": "so?"}]
        r = await client.post("/api/chat", json={"model": MODEL, "messages": history, "tools": None, **nulls})
        assert r.status_code == 200, r.text
        r = await client.post("/api/chat", json={"model": MODEL, "messages": None, "stream": False})
        assert r.status_code == 200 and r.json()["done_reason"] == "load"
        r = await client.post("/api/chat", json={"model": MODEL, "messages": HI, "stream": False,
                                                 "options": {"temperature": None, "num_predict": None}})
        assert r.status_code == 200
        r = await client.post("/api/embed", json={"model": EMBED, "input": "x", "truncate": None,
                                                   "options": None, "dimensions": None})
        assert r.status_code == 200 and len(r.json()["embeddings"]) == 1


# -- 7: raw answers carry no context; an empty prompt only loads ---------------------------------------
async def test_raw_has_no_context_and_empty_prompt_loads(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        raw = await client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "raw": True, "stream": False})
        assert raw.status_code == 200 and "context" not in raw.json()
        streamed = _ndjson((await client.post("/api/generate", json={"model": MODEL, "prompt": "hi",
                                                                     "raw": True})).text)
        assert not any("context" in line for line in streamed)
        chat = await client.post("/api/generate", json={"model": MODEL, "prompt": "hi", "stream": False})
        assert chat.json()["context"]
        sent = len(engines[MODEL].requests)
        for body in ({"prompt": ""}, {"system": "You are terse."}, {"prompt": "", "system": "Be terse."}):
            r = await client.post("/api/generate", json={"model": MODEL, "stream": False, **body})
            assert r.status_code == 200 and r.json()["done_reason"] == "load" and r.json()["response"] == ""
        assert len(engines[MODEL].requests) == sent  # nothing generated


# -- 8: HEAD on the lists, DELETE without a content type ---------------------------------------------------
async def test_head_and_delete_without_content_type(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        for path in ("/api/version", "/api/tags"):
            assert (await client.head(path)).status_code == 200
        created = await client.post("/api/create", json={"model": "mine", "from": MODEL, "stream": False})
        assert created.status_code == 200, created.text
        r = await client.request("DELETE", "/api/delete", content=json.dumps({"model": "mine"}))
        assert r.status_code == 200, r.text
        r = await client.request("DELETE", "/api/delete", content=json.dumps({"model": "mine"}))
        assert r.status_code == 404 and set(r.json()) == {"error"}


# -- 9: embeddings: dimensions (both doors), empty input ------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/embed", "/v1/embeddings"])
async def test_dimensions_shorten_and_renormalize(path: str, home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        full = await client.post(path, json={"model": EMBED, "input": ["one", "two"]})
        short = await client.post(path, json={"model": EMBED, "input": ["one", "two"], "dimensions": 3})
        too_many = await client.post(path, json={"model": EMBED, "input": "one", "dimensions": 9})
    vectors = [full.json()["embeddings"], short.json()["embeddings"]] if path == "/api/embed" else [
        [d["embedding"] for d in full.json()["data"]], [d["embedding"] for d in short.json()["data"]]]
    for long, cut in zip(*vectors, strict=True):
        assert len(long) == 8 and len(cut) == 3
        assert math.isclose(sum(x * x for x in cut), 1.0, rel_tol=1e-6)
        scale = cut[0] / long[0]
        assert all(math.isclose(c, v * scale, rel_tol=1e-6) for c, v in zip(cut, long[:3], strict=True))
    assert too_many.status_code == 400 and "at most 8" in json.dumps(too_many.json())


async def test_empty_embed_input_loads_and_answers_nothing(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        for empty in ("", []):
            r = await client.post("/api/embed", json={"model": EMBED, "input": empty})
            assert r.status_code == 200 and r.json()["embeddings"] == [] and r.json()["model"] == EMBED
        assert (await client.post("/api/embed", json={"model": "nope", "input": []})).status_code == 404
        assert (await client.post("/v1/embeddings", json={"model": EMBED, "input": []})).status_code == 400
    assert EMBED in engines.opened and not engines[EMBED].inputs


# -- 10: push; blobs and create with files ---------------------------------------------------------------
def _blob(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


async def test_push_is_a_clean_ollama_error(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        r = await client.post("/api/push", json={"model": MODEL})
    assert r.status_code == 400 and set(r.json()) == {"error"} and "not supported" in r.json()["error"]


async def test_blob_upload_then_create_with_files_then_chat(home: Path, engines: Engines) -> None:
    gguf = EMBEDDED[MODEL].path().read_bytes()  # larger than the 4 MiB JSON body cap
    digest = _blob(gguf)
    async with app_client(settings(home)) as client:
        assert (await client.head(f"/api/blobs/{digest}")).status_code == 404
        r = await client.post(f"/api/blobs/{digest}", content=gguf, headers={"content-type": "application/json"})
        assert r.status_code == 201, r.text
        assert (await client.head(f"/api/blobs/{digest}")).status_code == 200
        again = await client.post(f"/api/blobs/{digest}", content=gguf,
                                  headers={"content-type": "application/octet-stream"})
        assert again.status_code == 200
        r = await client.post("/api/create", json={"model": "uploaded", "files": {"model.gguf": digest},
                                                   "system": "You are Uploaded.", "stream": False})
        assert r.status_code == 200 and r.json() == {"status": "success"}, r.text
        shown = await client.post("/api/show", json={"model": "uploaded"})
        assert shown.status_code == 200 and shown.json()["system"] == "You are Uploaded."
        r = await client.post("/api/chat", json={"model": "uploaded", "messages": HI, "stream": False})
        assert r.status_code == 200, r.text
    assert "You are Uploaded." in engines["uploaded"].detokenize(engines["uploaded"].requests[-1].prompt)
    assert not list((home / "tmp").glob("*"))  # no partial file left


async def test_blob_checks(home: Path, engines: Engines) -> None:
    data = b"GGUF not really"
    config = settings(home, server__max_blob_bytes=1024)
    async with app_client(config) as client:
        wrong = await client.post(f"/api/blobs/{_blob(b'other')}", content=data)
        assert wrong.status_code == 400 and "digest mismatch" in wrong.json()["error"]
        big = b"x" * 2048
        assert (await client.post(f"/api/blobs/{_blob(big)}", content=big)).status_code == 413
        bad = await client.post("/api/blobs/sha256:nothex", content=data)
        assert bad.status_code == 400 and set(bad.json()) == {"error"}
        assert (await client.post(f"/api/blobs/{_blob(data)}", content=data)).status_code == 201
        r = await client.post("/api/create", json={"model": "junk", "files": {"x.gguf": _blob(data)},
                                                   "stream": False})
        assert r.status_code == 400 and set(r.json()) == {"error"}  # not a GGUF
        r = await client.post("/api/create", json={"model": "x", "files": {"x.safetensors": _blob(data)},
                                                   "stream": False})
        assert r.status_code == 400 and "gguf" in r.json()["error"]
        missing = await client.post("/api/create", json={"model": "x", "files": {"m.gguf": _blob(b"none")},
                                                         "stream": False})
        assert missing.status_code == 404 and "POST /api/blobs" in missing.json()["error"]
    for name in ("blobs", "tmp"):
        assert not [p for p in (home / name).glob("*") if p.name == f"sha256-{_blob(b'other')[7:]}"]
    assert not list((home / "tmp").glob("*"))


async def test_blob_routes_need_an_admin_key(home: Path, engines: Engines) -> None:
    config = settings(home)
    plain = make_key(config)
    data = b"x" * 10
    async with app_client(config, plain) as client:
        for method in ("HEAD", "POST"):
            r = await client.request(method, f"/api/blobs/{_blob(data)}", content=data)
            assert r.status_code == 403
        assert (await client.post("/api/push", json={"model": MODEL})).status_code == 403
    assert not (home / "blobs").exists() or not list((home / "blobs").glob("*"))


# -- 11: the body caps ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/embed", "/v1/embeddings"])
async def test_embedding_batches_have_their_own_body_cap(path: str, home: Path, engines: Engines) -> None:
    """4 MiB stays the cap for chat; an embedding batch may be larger (server.max_batch_body_bytes)."""
    over_4mib = {"model": EMBED, "input": ["word " * 60] * 15000}  # ~4.6 MiB
    async with app_client(settings(home, server__max_batch_body_bytes=5 * 2**20)) as client:
        read = await client.post(path, json=over_4mib)
        too_big = await client.post(path, json={**over_4mib, "input": over_4mib["input"] * 2})
        chat = await client.post("/api/chat", json={"model": MODEL, "messages": [
            {"role": "user", "content": "word " * 1_000_000}]})
    assert read.status_code == 400 and "2048" in read.text  # read and checked (too many items), not 413
    assert too_big.status_code == 413 and chat.status_code == 413


async def test_a_large_embedding_batch_is_embedded(home: Path, engines: Engines) -> None:
    batch = ["word " * 600] * 1500  # ~4.5 MiB, each input cut to the model's context (Ollama's truncate)
    async with app_client(settings(home)) as client:
        r = await client.post("/api/embed", json={"model": EMBED, "input": batch})
    assert r.status_code == 200 and len(r.json()["embeddings"]) == 1500
