"""Hostile input against a running server (issue 17): each is a clean 4xx naming the field, and
the server keeps serving: a normal request on the same connection succeeds afterwards."""

from __future__ import annotations

import concurrent.futures
import json
from typing import Any

import httpx
import pytest

from tests.conftest import EMBED_MODEL, MODEL
from tests.helpers import ServerProcess

HI = [{"role": "user", "content": "Hi"}]
CHAT = {"model": MODEL, "messages": HI, "max_tokens": 2}
GENERATE = {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 2}}
HUGE = "9" * 400  # an integer too large for a C double


def _raw(client: httpx.Client, path: str, body: str | bytes) -> httpx.Response:
    data = body.encode() if isinstance(body, str) else body
    return client.post(path, content=data, headers={"content-type": "application/json"})


def _param(resp: httpx.Response) -> str:
    assert resp.status_code == 400, resp.text
    body = resp.json()
    if isinstance(body["error"], str):  # Ollama's shape names the field in the message
        return str(body["error"])
    return str(body["error"]["param"])


@pytest.fixture(scope="module")
def http(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=120)


OPENAI_NUMBERS = [
    (f'"temperature": {HUGE}', "temperature"),
    ('"top_p": NaN', "top_p"),
    ('"presence_penalty": Infinity', "presence_penalty"),
    ('"repeat_penalty": 1e400', "repeat_penalty"),
    ('"top_k": 1099511627776', "top_k"),
    ('"seed": 1180591620717411303424', "seed"),
    ('"max_tokens": 1099511627776', "max_tokens"),
    ('"n": 1000000', "n"),
    ('"logit_bias": {"\\u00b2": 1}', "logit_bias"),  # "²".isdigit() is True, int("²") fails
    ('"logit_bias": {"5": NaN}', "logit_bias"),
]


@pytest.mark.parametrize(("field", "param"), OPENAI_NUMBERS)
def test_openai_numbers_are_finite_and_bounded(http: httpx.Client, field: str, param: str) -> None:
    body = '{"model": "' + MODEL + '", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, ' + field + "}"
    if param == "max_tokens":
        body = body.replace('"max_tokens": 2, ', "")
    assert _param(_raw(http, "/v1/chat/completions", body)) == param


OLLAMA_NUMBERS = [
    (f'"temperature": {HUGE}', "options.temperature"),
    ('"repeat_last_n": 268435456', "options.repeat_last_n"),  # grew the RSS to 1.3 GB
    ('"num_ctx": 1099511627776', "options.num_ctx"),
    ('"num_predict": 1099511627776', "options.num_predict"),
    ('"top_k": -5', "options.top_k"),
    ('"seed": 1180591620717411303424', "options.seed"),
    ('"frequency_penalty": NaN', "options.frequency_penalty"),
]


@pytest.mark.parametrize(("option", "param"), OLLAMA_NUMBERS)
def test_ollama_options_are_finite_and_bounded(http: httpx.Client, option: str, param: str) -> None:
    body = '{"model": "' + MODEL + '", "prompt": "Hi", "stream": false, "options": {' + option + "}}"
    assert param in _param(_raw(http, "/api/generate", body))


@pytest.mark.parametrize(("extra", "param"), [
    ({"context": [-1]}, "context"),
    ({"context": [99_999_999]}, "context"),  # failed llama_decode for every stream in the step
    ({"keep_alive": "1e400h"}, "keep_alive"),
])
def test_ollama_ids_and_durations(http: httpx.Client, extra: dict[str, Any], param: str) -> None:
    assert param in _param(http.post("/api/generate", json={**GENERATE, **extra}))


def test_huge_keep_alive_is_forever_and_ps_answers(http: httpx.Client) -> None:
    assert http.post("/api/generate", json={**GENERATE, "keep_alive": 1e12}).status_code == 200
    ps = http.get("/api/ps")
    assert ps.status_code == 200, ps.text
    assert {m["name"]: m["expires_at"] for m in ps.json()["models"]}[f"{MODEL}:latest"] > "2100"
    assert http.post("/api/generate", json={**GENERATE, "keep_alive": "5m"}).status_code == 200


BAD_TEXT = [b'"\\ud800"', b'"a\\udfffb"', b'"\xed\xa0\x80"']  # lone surrogates, escaped and as CESU-8
ROUTES = [
    ("/v1/chat/completions", b'{"model": "%s", "max_tokens": 2, "messages": [{"role": "user", "content": %s}]}'),
    ("/v1/completions", b'{"model": "%s", "max_tokens": 2, "prompt": %s}'),
    ("/v1/embeddings", b'{"model": "' + EMBED_MODEL.encode() + b'", "input": [%s]}'),
    ("/api/chat", b'{"model": "%s", "stream": false, "messages": [{"role": "user", "content": %s}]}'),
    ("/api/generate", b'{"model": "%s", "stream": false, "prompt": %s}'),
    ("/api/embed", b'{"model": "' + EMBED_MODEL.encode() + b'", "input": %s}'),
    ("/tokenize", b'{"model": "%s", "content": %s}'),
]


@pytest.mark.parametrize(("path", "template"), ROUTES)
def test_invalid_unicode_is_400_and_the_connection_stays_usable(server: ServerProcess, path: str,
                                                               template: bytes) -> None:
    with httpx.Client(base_url=server.url, timeout=120) as client:  # one keep-alive connection
        for text in BAD_TEXT:
            body = template % ((MODEL.encode(), text) if template.count(b"%s") == 2 else (text,))
            resp = _raw(client, path, body)
            assert resp.status_code == 400 and resp.headers["content-type"] == "application/json", resp.text
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


SCHEMAS = [
    {"enum": []},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 100_000},  # segfaulted the server
    {"enum": [f"v{i}" for i in range(20_000)]},  # stalled the engine for 160 s
    json.loads('{"type": "object", "properties": {"a": ' * 100 + '{"type": "integer"}' + "}}" * 100),
]


@pytest.mark.parametrize("schema", SCHEMAS, ids=["empty-enum", "max-items", "big-enum", "deep"])
def test_pathological_schemas_are_400_on_both_apis(http: httpx.Client, schema: dict[str, Any]) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    resp = http.post("/v1/chat/completions", json={**CHAT, "response_format": fmt})
    assert _param(resp).startswith("response_format")
    assert "format" in _param(http.post("/api/chat", json={"model": MODEL, "messages": HI, "stream": False,
                                                            "format": schema}))


def test_a_refused_grammar_disturbs_no_one(http: httpx.Client) -> None:
    """200, 400, 200 where it was 200, 500, 500: the refused grammar never reaches a slot, and the
    request sharing a longer prefix afterwards finds the cache in step."""
    first = http.post("/v1/completions", json={"model": MODEL, "prompt": "The sea is", "max_tokens": 3,
                                               "temperature": 0}).json()["choices"][0]["text"]
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"enum": []}}}
    requests = [{"prompt": "The sea is" + first + " and", "response_format": bad},
                {"prompt": "The sea is" + first + " and the sky", "max_tokens": 2},
                {"prompt": "The sea is", "max_tokens": 2}]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        codes = list(pool.map(lambda extra: http.post("/v1/completions", json={
            "model": MODEL, "max_tokens": 2, "temperature": 0, **extra}).status_code, requests))
    assert codes == [400, 200, 200]


@pytest.mark.parametrize("tokens", [[[-1]], [[99_999_999]], [[]], [[5, 10**12]]])
def test_embedding_token_ids_are_checked(http: httpx.Client, tokens: list[list[int]]) -> None:
    assert _param(http.post("/v1/embeddings", json={"model": EMBED_MODEL, "input": tokens})) == "input"
