"""What a web page the user visits may try against a local server (issue 17, items 8-10):
simple-request CSRF, DNS rebinding (a foreign Host), oversized headers; and the OpenAPI document
says what the server sends."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import MODEL
from tests.helpers import ServerProcess
from tests.reliability.conftest import still_serves

EVIL = "http://evil.example"
BODIES = {
    "/api/copy": {"source": MODEL, "destination": "csrf-copy"},
    "/api/create": {"model": "csrf-created", "from": MODEL, "stream": False},
    "/api/pull": {"model": "smollm2-135m-instruct", "name": "csrf-pulled", "stream": False},
    "/api/generate": {"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 1}},
}


def _names(server: ServerProcess) -> set[str]:
    return {m["name"] for m in httpx.get(f"{server.url}/api/tags", timeout=60).json()["models"]}


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "text/plain;charset=UTF-8",
                                   "multipart/form-data; boundary=x"])
def test_simple_requests_change_nothing(rserver: ServerProcess, ctype: str) -> None:
    before = _names(rserver)
    for path, body in BODIES.items():
        raw = json.dumps(body)
        # a form or fetch() from another site: it always names its origin
        evil = httpx.post(f"{rserver.url}{path}", content=raw, headers={"content-type": ctype, "origin": EVIL},
                          timeout=60)
        assert evil.status_code == 403 and isinstance(evil.json()["error"], str), (path, evil.text)
        # the same body with no Origin (a privacy extension strips it): not JSON, so not read
        bare = httpx.post(f"{rserver.url}{path}", content=raw, headers={"content-type": ctype}, timeout=60)
        assert bare.status_code == 415 and "application/json" in bare.json()["error"], (path, bare.text)
    deleted = httpx.request("DELETE", f"{rserver.url}/api/delete", content=json.dumps({"model": MODEL}),
                            headers={"content-type": "text/plain", "origin": EVIL}, timeout=60)
    assert deleted.status_code == 403
    assert _names(rserver) == before


def test_a_foreign_origin_is_refused_even_with_json(rserver: ServerProcess) -> None:
    resp = httpx.post(f"{rserver.base_url}/chat/completions", headers={"origin": EVIL}, timeout=60,
                      json={"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "origin_not_allowed"
    own = httpx.post(f"{rserver.url}/api/show", json={"model": MODEL}, headers={"origin": rserver.url}, timeout=60)
    assert own.status_code == 200  # the chat page, same origin


def test_dns_rebinding_gets_403(rserver: ServerProcess) -> None:
    for path in ("/api/tags", "/v1/models", "/"):
        rebound = httpx.get(f"{rserver.url}{path}", headers={"host": f"attacker.example:{rserver.port}"}, timeout=30)
        assert rebound.status_code == 403, path
    assert httpx.get(f"{rserver.url}/api/tags", headers={"host": f"localhost:{rserver.port}"},
                     timeout=30).status_code == 200


def test_oversized_request_headers_get_431(rserver: ServerProcess) -> None:
    resp = httpx.get(f"{rserver.url}/v1/models", headers={f"x-pad-{i}": "a" * 8000 for i in range(25)}, timeout=30)
    assert resp.status_code == 431 and resp.json()["error"]["code"] == "request_header_fields_too_large"
    still_serves(rserver)


def test_the_openapi_document_says_what_is_sent(rserver: ServerProcess) -> None:
    doc = httpx.get(f"{rserver.url}/openapi.json", timeout=30).json()
    paths = doc["paths"]
    assert not any("422" in op["responses"] for ops in paths.values() for op in ops.values())
    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert {"400", "401", "403", "404", "413", "415", "429", "503"} <= set(chat)
    assert "text/event-stream" in chat["200"]["content"]
    assert chat["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/OpenAIError")
    generate = paths["/api/generate"]["post"]["responses"]
    assert "application/x-ndjson" in generate["200"]["content"]
    assert generate["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/OllamaError")
    assert list(paths["/metrics"]["get"]["responses"]["200"]["content"]) == ["text/plain"]
    assert "Retry-After" in chat["429"]["headers"]
