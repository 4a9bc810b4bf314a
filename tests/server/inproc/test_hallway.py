"""The bugs the one-hallway refactor fixed, each through the doors it reached (in process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slmkit.engine.base import GenerationRequest
from tests.inprocess import MODEL, Engines, app_client, make_key, settings

pytestmark = pytest.mark.asyncio
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}


def _sse(text: str) -> list[Any]:
    return [json.loads(line[6:]) if line[6:] != "[DONE]" else "[DONE]"
            for line in text.splitlines() if line.startswith("data: ")]


def _ndjson(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- policy: scope on every route that names a model, admin on the store ---------------------------
@pytest.mark.parametrize(("path", "body"), [
    ("/tokenize", {"model": MODEL, "content": "hi"}),
    ("/detokenize", {"model": MODEL, "tokens": [70]}),
    ("/api/show", {"model": MODEL}),
    ("/api/show", {"name": MODEL}),
    ("/api/embed", {"model": "all-minilm-l6-v2", "input": "hi"}),
    ("/v1/embeddings", {"model": "all-minilm-l6-v2", "input": "hi"}),
])
async def test_scoped_key_cannot_touch_other_models(path: str, body: dict[str, Any], home: Path,
                                                    engines: Engines) -> None:
    config = settings(home)
    key = make_key(config, models=["some-other-model"])
    async with app_client(config, key) as client:
        r = await client.post(path, json=body)
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert (error if path.startswith("/api/") else error["code"]) in (
            "model_not_allowed", f"this API key may not use the model '{body.get('model') or body.get('name')}'")
        r = await client.get(f"/v1/models/{MODEL}")
        assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    assert not any(e.requests for e in engines.opened.values())


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/api/pull", {"model": "hf.co/x/y"}),
    ("POST", "/api/create", {"model": "mine", "from": MODEL}),
    ("POST", "/api/copy", {"source": MODEL, "destination": "mine"}),
    ("DELETE", "/api/delete", {"model": "mine"}),
])
async def test_store_routes_need_an_admin_key(method: str, path: str, body: dict[str, Any], home: Path,
                                              engines: Engines) -> None:
    config = settings(home)
    plain = make_key(config)
    async with app_client(config, plain) as client:
        r = await client.request(method, path, json=body)
        assert r.status_code == 403 and r.json() == {
            "error": "this route changes the model store: it needs a key created with --admin"}


async def test_admin_key_may_change_the_store(home: Path, engines: Engines) -> None:
    config = settings(home)
    admin = make_key(config, admin=True)
    async with app_client(config, admin) as client:
        r = await client.post("/api/create", json={"model": "mine", "from": MODEL, "stream": False})
        assert r.status_code == 200, r.text
        r = await client.post("/api/copy", json={"source": "mine", "destination": "mine2"})
        assert r.status_code == 200, r.text
        r = await client.request("DELETE", "/api/delete", json={"model": "mine"})
        assert r.status_code == 200, r.text


def test_every_route_declares_a_policy(home: Path) -> None:
    from fastapi.routing import APIRoute

    from slmkit.server.app import create_app
    from slmkit.server.policy import flat_routes, policy_of

    app = create_app(settings(home))
    routes = [r for r in flat_routes(app.router.routes) if isinstance(r, APIRoute)]
    assert routes and all(policy_of(r) is not None for r in routes)
    kinds = {r.path: policy_of(r).kind for r in routes}  # type: ignore[union-attr]
    assert kinds["/api/pull"] == kinds["/api/delete"] == "admin"
    assert kinds["/tokenize"] == kinds["/v1/chat/completions"] == kinds["/api/show"] == "model"


# -- token ids are checked before the engine -------------------------------------------------------
@pytest.mark.parametrize(("path", "body", "param"), [
    ("/api/generate", {"model": MODEL, "prompt": "hi", "context": [5, 99999], "stream": False}, "context"),
    ("/v1/completions", {"model": MODEL, "prompt": [5, 6, -1]}, "prompt"),
    ("/v1/completions", {"model": MODEL, "prompt": [[5], [10**6]]}, "prompt"),
    ("/v1/chat/completions", {**CHAT, "logit_bias": {"99999": 1}}, "logit_bias"),
    ("/detokenize", {"model": MODEL, "tokens": [99999]}, "tokens"),
])
async def test_out_of_vocabulary_token_ids_are_400(path: str, body: dict[str, Any], param: str, home: Path,
                                                   engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        r = await client.post(path, json=body)
        assert r.status_code == 400, r.text
        if path.startswith("/api/"):
            assert param in r.json()["error"]
        else:
            assert r.json()["error"]["param"] == param
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200  # others unaffected
    assert len(engines[MODEL].requests) == 1


# -- one event pipeline: errors in every API's shape ------------------------------------------------
BAD_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": 7}}\n</tool_call>'
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


async def test_unparsable_tool_call_streams_an_error_frame_then_done(home: Path, engines: Engines) -> None:
    engines.reply = BAD_CALL
    async with app_client(settings(home)) as client:
        r = await client.post("/v1/chat/completions", json={**CHAT, "tools": TOOLS, "stream": True})
        frames = _sse(r.text)
        assert frames[-1] == "[DONE]" and frames[-2]["error"]["code"] == "invalid_output"
        r = await client.post("/api/chat", json={**CHAT, "tools": TOOLS})
        assert "does not match its parameters" in _ndjson(r.text)[-1]["error"]


def _explode(prompt: str, request: GenerationRequest) -> str:
    raise RuntimeError("boom")


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/chat/completions", CHAT), ("/v1/completions", {"model": MODEL, "prompt": "hi"}),
    ("/api/chat", {**CHAT, "stream": False}), ("/api/generate", {"model": MODEL, "prompt": "hi", "stream": False}),
])
async def test_unexpected_errors_are_500_in_the_api_shape(path: str, body: dict[str, Any], home: Path,
                                                          engines: Engines, caplog: pytest.LogCaptureFixture) -> None:
    engines.reply = _explode
    async with app_client(settings(home)) as client:
        r = await client.post(path, json=body)
        assert r.status_code == 500 and r.headers["content-type"] == "application/json"
        if path.startswith("/api/"):
            assert r.json() == {"error": "internal error: RuntimeError"}
        else:
            assert r.json()["error"]["code"] == "internal_error" and r.json()["error"]["type"] == "server_error"
    assert "RuntimeError: boom" in caplog.text  # the traceback is in the server log


# -- streamed completions: text_offset runs on across chunks ---------------------------------------
async def test_streamed_text_offset_continues(home: Path, engines: Engines) -> None:
    engines.reply = "abcdef"
    body = {"model": MODEL, "prompt": "xy", "logprobs": 1, "max_tokens": 6, "echo": True}
    async with app_client(settings(home)) as client:
        whole = (await client.post("/v1/completions", json=body)).json()["choices"][0]["logprobs"]["text_offset"]
        frames = _sse((await client.post("/v1/completions", json={**body, "stream": True})).text)
    streamed = [o for f in frames[:-1] for c in f["choices"] if c["logprobs"] for o in c["logprobs"]["text_offset"]]
    # echo with logprobs scores the prompt: "<s>", "x", "y" first (offsets from 0), then one
    # character per generated token
    assert whole == [0, 3, 4, 5, 6, 7, 8, 9, 10]
    assert streamed == whole
    plain = {**body, "echo": False}  # without echo the offsets start at 0 with the answer
    async with app_client(settings(home)) as client:
        alone = (await client.post("/v1/completions", json=plain)).json()["choices"][0]["logprobs"]["text_offset"]
        frames = _sse((await client.post("/v1/completions", json={**plain, "stream": True})).text)
    assert alone == [0, 1, 2, 3, 4, 5]
    streamed = [o for f in frames[:-1] for c in f["choices"] if c["logprobs"] for o in c["logprobs"]["text_offset"]]
    assert streamed == alone


# -- tokenizing never holds the event loop -------------------------------------------------------
async def test_health_answers_while_tokenize_runs(home: Path, engines: Engines) -> None:
    """The tokenizer is held mid-call (a threading.Event): /health must still answer, so
    tokenizing runs off the event loop (issue 17's 3.8 MB /tokenize held /health for seconds)."""
    import asyncio
    import threading

    async with app_client(settings(home)) as client:
        fake = engines[MODEL]
        entered, release = threading.Event(), threading.Event()
        plain = fake.tokenize

        def slow(text: str, **kwargs: Any) -> list[int]:
            entered.set()
            release.wait(30)
            return plain(text, **kwargs)

        fake.tokenize = slow  # type: ignore[method-assign]
        job = asyncio.create_task(client.post("/tokenize", json={"model": MODEL, "content": "hi"}))
        await asyncio.to_thread(entered.wait, 30)
        health = await client.get("/health")
        assert health.status_code == 200 and not job.done()
        release.set()
        assert (await job).json()["count"] == 3
