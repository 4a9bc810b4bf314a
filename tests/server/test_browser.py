"""The browser guard in process (``server.browser``): Host, Origin, JSON-only bodies, header size,
security headers. The same attacks against a real server are in tests/reliability/."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from slmkit.server.browser import BrowserGuard, host_name
from slmkit.settings import load_settings


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True, "body": (await request.body()).decode(),
                         "type": request.headers.get("content-type")})


def _client(**settings: object) -> httpx.AsyncClient:
    app = Starlette(routes=[Route("/api/{rest:path}", _echo, methods=["GET", "POST", "DELETE"]),
                            Route("/v1/{rest:path}", _echo, methods=["GET", "POST"])])
    guarded = BrowserGuard(app, load_settings(**settings))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://127.0.0.1:8080")


JSON = b'{"model": "x"}'


@pytest.mark.parametrize("ctype", ["application/x-www-form-urlencoded", "text/plain;charset=UTF-8",
                                   "multipart/form-data; boundary=x"])
async def test_simple_request_bodies_get_415_in_each_api_shape(ctype: str) -> None:
    async with _client() as client:
        ollama = await client.post("/api/copy", content=JSON, headers={"content-type": ctype})
        assert ollama.status_code == 415 and isinstance(ollama.json()["error"], str)
        openai = await client.post("/v1/chat/completions", content=JSON, headers={"content-type": ctype})
        assert openai.status_code == 415 and openai.json()["error"]["code"] == "unsupported_media_type"


async def test_json_and_curl_style_bodies_pass() -> None:
    async with _client() as client:
        assert (await client.post("/api/copy", content=JSON, headers={"content-type": "application/json"})).json()["ok"]
        assert (await client.post("/api/copy", content=JSON,
                                  headers={"content-type": "application/vnd.api+json"})).status_code == 200
        bare = await client.post("/api/copy", content=JSON)  # no content type, no Origin: curl, scripts
        assert bare.status_code == 200 and bare.json()["type"] == "application/json"  # read as JSON
        same = {"origin": "http://127.0.0.1:8080"}
        assert (await client.post("/api/copy", content=JSON, headers=same)).status_code == 415  # a browser's body
        assert (await client.post("/api/copy", content=JSON,
                                  headers={**same, "content-type": "application/json"})).status_code == 200


async def test_foreign_origins_are_refused_unless_cors_allows_them() -> None:
    async with _client() as client:
        evil = await client.post("/api/delete", json={"model": "x"}, headers={"origin": "http://evil.example"})
        assert evil.status_code == 403 and "cross-origin" in evil.json()["error"]
        assert (await client.get("/v1/models", headers={"origin": "null"})).status_code == 403
    async with _client(security__cors_origins=["http://app.example"]) as client:
        allowed = await client.post("/v1/x", json={}, headers={"origin": "http://app.example"})
        assert allowed.status_code == 200


async def test_foreign_host_names_are_refused_on_loopback() -> None:
    async with _client() as client:
        rebound = await client.get("/v1/models", headers={"host": "attacker.example:8080"})
        assert rebound.status_code == 403 and rebound.json()["error"]["code"] == "host_not_allowed"
        for host in ("localhost:8080", "app.localhost", "127.0.0.1:8080", "[::1]:8080", "10.0.0.5"):
            assert (await client.get("/v1/models", headers={"host": host})).status_code == 200, host
    async with _client(security__allowed_hosts=["models.lan"]) as client:
        assert (await client.get("/v1/models", headers={"host": "models.lan:8080"})).status_code == 200
        assert (await client.get("/v1/models", headers={"host": "other.lan"})).status_code == 403
    async with _client(security__allowed_hosts=["*"]) as client:
        assert (await client.get("/v1/models", headers={"host": "anything.example"})).status_code == 200
    async with _client(server__host="0.0.0.0") as client:  # bound beyond loopback: names are not checked
        assert (await client.get("/v1/models", headers={"host": "slm.internal"})).status_code == 200


async def test_oversized_headers_get_431_and_responses_carry_security_headers() -> None:
    async with _client() as client:
        big = await client.get("/v1/models", headers={"x-junk": "a" * 70_000})
        assert big.status_code == 431
        ok = await client.get("/v1/models")
        for response in (big, ok):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert "default-src 'self'" in response.headers["content-security-policy"]


def test_host_name() -> None:
    assert host_name("[::1]:8080") == "::1" and host_name("Example.COM:80") == "example.com"
    assert host_name("::1") == "::1" and host_name("localhost") == "localhost"
