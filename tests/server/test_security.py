"""API keys, scopes, rate limits, caps, CORS, audit log, TLS and graceful drain."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.conftest import MODEL
from tests.helpers import ServerProcess

HI = [{"role": "user", "content": "Hi"}]
STORY = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]


def slm(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "SLM_HOME": str(home)})


def new_key(home: Path, name: str, *extra: str) -> str:
    out = slm(home, "keys", "create", "--name", name, "--json", *extra)
    assert out.returncode == 0, out.stderr
    return str(json.loads(out.stdout)["key"])


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Path, dict[str, str]]]:
    home = tmp_path_factory.mktemp("keyed-home")
    keys = {
        "all": new_key(home, "all-models"),
        "scoped": new_key(home, "scoped", "--models", MODEL),
        "other": new_key(home, "other", "--models", "some-other-model"),
        "rpm": new_key(home, "rpm", "--rpm", "3"),
        "tpm": new_key(home, "tpm", "--tpm", "60"),
        "revoked": new_key(home, "revoked"),
        "expired": new_key(home, "expired", "--expires", "1s"),
    }
    assert slm(home, "keys", "revoke", "revoked").returncode == 0
    time.sleep(1.1)
    proc = ServerProcess("--parallel", "2", "--ctx-size", "512", env={"SLM_HOME": str(home)})
    yield proc, home, keys
    proc.close()


def _chat(server: ServerProcess, key: str | None, path: str = "/v1/chat/completions", **body: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{server.url}{path}", json={"model": MODEL, "messages": HI, "max_tokens": 3, **body},
                      headers=headers, timeout=60)


def test_missing_malformed_and_bad_keys_get_401(keyed: tuple[ServerProcess, Path, dict[str, str]]) -> None:
    server, _, keys = keyed
    assert _chat(server, None).status_code == 401
    assert _chat(server, None).json()["error"]["type"] == "authentication_error"
    bad = httpx.get(f"{server.base_url}/models", headers={"Authorization": "Token abc"})
    assert bad.status_code == 401 and "Bearer" in bad.json()["error"]["message"]
    messages = set()
    for key in ("sk-wrong-prefix", "slm_00000000_" + "A" * 43, keys["revoked"], keys["expired"],
                keys["all"][:-1] + ("B" if keys["all"][-1] != "B" else "C")):
        resp = _chat(server, key)
        assert resp.status_code == 401
        assert resp.headers["www-authenticate"] == "Bearer"
        messages.add(resp.json()["error"]["message"])
    assert len(messages) == 1  # nothing tells whether a key exists


def test_ollama_paths_get_ollama_shaped_401(keyed: tuple[ServerProcess, Path, dict[str, str]]) -> None:
    server, _, _ = keyed
    resp = httpx.get(f"{server.url}/api/tags")
    assert resp.status_code == 401
    assert isinstance(resp.json()["error"], str)


def test_probes_are_open_metrics_are_not(keyed: tuple[ServerProcess, Path, dict[str, str]]) -> None:
    server, _, keys = keyed
    assert httpx.get(f"{server.url}/health").status_code == 200
    assert httpx.get(f"{server.url}/ready").status_code == 200
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {keys['all']}"}).status_code == 200
    scoped = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {keys['scoped']}"})
    assert scoped.status_code == 403  # every model's series: not for a key scoped to some models


def test_scoped_keys_see_and_use_only_their_models(keyed: tuple[ServerProcess, Path, dict[str, str]]) -> None:
    server, _, keys = keyed
    for name in ("all", "scoped"):
        client = openai.OpenAI(base_url=server.base_url, api_key=keys[name], max_retries=0)
        listed = [m.id for m in client.models.list().data]
        assert MODEL in listed
        if name == "scoped":
            assert listed == [MODEL]
        assert client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2).choices
    other = openai.OpenAI(base_url=server.base_url, api_key=keys["other"], max_retries=0)
    assert other.models.list().data == []
    with pytest.raises(openai.PermissionDeniedError):
        other.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)


def test_scopes_apply_to_the_ollama_api(keyed: tuple[ServerProcess, Path, dict[str, str]]) -> None:
    server, _, keys = keyed

    def tags(key: str) -> list[str]:
        resp = httpx.get(f"{server.url}/api/tags", headers={"Authorization": f"Bearer {key}"}, timeout=60)
        assert resp.status_code == 200
        return [m["name"] for m in resp.json()["models"]]

    assert set(tags(keys["scoped"])) == {f"{MODEL}:latest"}  # nothing outside the key's scope is listed
    assert tags(keys["other"]) == []
    denied = httpx.post(f"{server.url}/api/chat", headers={"Authorization": f"Bearer {keys['other']}"},
                        json={"model": MODEL, "messages": HI, "stream": False}, timeout=60)
    assert denied.status_code == 403 and isinstance(denied.json()["error"], str)
    ollama_client = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {keys['scoped']}"})
    reply = ollama_client.chat(model=MODEL, messages=HI, options={"num_predict": 3})
    assert reply.message.content is not None


def test_rpm_limit(keyed: tuple[ServerProcess, Path, dict[str, str]]) -> None:
    server, _, keys = keyed
    answers = [_chat(server, keys["rpm"]) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "3"
    assert answers[2].headers["x-ratelimit-remaining-requests"] == "0"
    refused = answers[3]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-ratelimit-limit-requests"] == "3"  # the 429 says which limit, too
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert _chat(server, keys["all"]).status_code == 200  # other keys are not affected


def test_tpm_limit_stops_a_key_between_requests(keyed: tuple[ServerProcess, Path, dict[str, str]]) -> None:
    server, _, keys = keyed
    first = _chat(server, keys["tpm"], messages=STORY, max_tokens=40)
    assert first.status_code == 200
    used = first.json()["usage"]["total_tokens"]
    assert used >= 60
    second = _chat(server, keys["tpm"])
    assert second.status_code == 429
    assert "tokens per minute" in second.json()["error"]["message"]


def test_keys_are_stored_hashed_and_survive_restart(keyed: tuple[ServerProcess, Path, dict[str, str]]) -> None:
    _server, home, keys = keyed
    for path in home.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for key in keys.values():
                assert key.encode() not in data
                assert key[len("slm_00000000_"):].encode() not in data
    listing = slm(home, "keys", "list", "--json")
    assert listing.returncode == 0
    assert {row["status"] for row in json.loads(listing.stdout)} == {"active", "revoked", "expired"}
    again = ServerProcess("--parallel", "1", "--ctx-size", "512", env={"SLM_HOME": str(home)})
    try:
        assert _chat(again, keys["all"]).status_code == 200
        assert _chat(again, None).status_code == 401
    finally:
        again.close()


def test_key_cli_errors_are_one_line(tmp_path: Path) -> None:
    for args in (["keys", "revoke", "nope"], ["keys", "create", "--name", "x", "--rpm", "-1"],
                 ["keys", "create", "--name", "x", "--expires", "soon"]):
        out = slm(tmp_path, *args)
        assert out.returncode != 0
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_static_api_key(tmp_path: Path) -> None:
    proc = ServerProcess("--parallel", "1", "--ctx-size", "512", "--api-key", "s3cret",
                         env={"SLM_HOME": str(tmp_path)})
    try:
        assert _chat(proc, None).status_code == 401
        assert _chat(proc, "wrong").status_code == 401
        assert _chat(proc, "s3cret").status_code == 200
    finally:
        proc.close()


def test_caps_cors_and_audit_log(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    proc = ServerProcess("--parallel", "1", "--ctx-size", "512", "--cors-origin", "http://app.example",
                         "--audit-log", str(audit),
                         env={"SLM_HOME": str(tmp_path), "SLM_SERVER__MAX_BODY_BYTES": "4096",
                              "SLM_SERVER__MAX_MESSAGES": "3", "SLM_SERVER__MAX_STOP": "2",
                              "SLM_SERVER__MAX_TOKENS_CAP": "64"})
    try:
        big = _chat(proc, None, messages=[{"role": "user", "content": "x" * 5000}])
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
        assert _chat(proc, None, messages=HI * 4).json()["error"]["param"] == "messages"
        assert _chat(proc, None, stop=["a", "b", "c"]).json()["error"]["param"] == "stop"
        assert _chat(proc, None, max_tokens=65).json()["error"]["param"] == "max_tokens"
        ok = _chat(proc, None, messages=[{"role": "user", "content": "secret words here"}])
        assert ok.status_code == 200
        pre = httpx.options(f"{proc.base_url}/chat/completions",
                            headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"})
        assert pre.headers["access-control-allow-origin"] == "http://app.example"
        other = httpx.options(f"{proc.base_url}/chat/completions",
                              headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        proc.close()
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [line["status"] for line in lines][:5] == [413, 400, 400, 400, 200]
    done = lines[4]
    assert done["model"] == MODEL and done["prompt_tokens"] > 0 and done["generated_tokens"] > 0
    assert done["route"] == "POST /v1/chat/completions" and done["client"] == "127.0.0.1"
    assert "secret words" not in audit.read_text()


def test_cors_is_off_by_default(server: ServerProcess) -> None:
    pre = httpx.options(f"{server.base_url}/chat/completions",
                        headers={"Origin": "http://app.example", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers


def test_tls_with_self_signed_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    trust = ssl.create_default_context(cafile=str(cert))
    proc = ServerProcess("--parallel", "1", "--ctx-size", "512", "--ssl-certfile", str(cert), "--ssl-keyfile",
                         str(key), scheme="https", verify=trust)
    try:
        client = openai.OpenAI(base_url=proc.base_url, api_key="x", max_retries=0,
                               http_client=httpx.Client(verify=trust))
        assert client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2).choices
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{proc.port}/health", timeout=5)
    finally:
        proc.close()


async def test_sigterm_drains_running_streams(tmp_path: Path) -> None:
    # a long drain timeout: on a loaded machine the two streams may need a while to finish
    proc = ServerProcess("--parallel", "2", "--ctx-size", "512", "--drain-timeout", "600",
                         env={"SLM_HOME": str(tmp_path)})
    try:
        client = openai.AsyncOpenAI(base_url=proc.base_url, api_key="x", max_retries=0, timeout=600)
        streams = [await client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=24, temperature=0,
                                                        stream=True) for _ in range(2)]
        for stream in streams:
            await stream.__anext__()
        proc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = httpx.post(f"{proc.base_url}/chat/completions", json={"model": MODEL, "messages": HI}, timeout=10)
        assert refused.status_code == 503
        assert httpx.get(f"{proc.url}/ready", timeout=10).status_code == 503
        for stream in streams:
            reason = None
            async for chunk in stream:
                reason = chunk.choices[0].finish_reason if chunk.choices else reason
            assert reason == "length"
        assert proc.proc.wait(timeout=120) == 0
    finally:
        proc.close()


def test_policy_on_tokenize_and_the_store(keyed: tuple[ServerProcess, Path, dict[str, str]]) -> None:
    """A scoped key cannot load another model through /tokenize; a key without --admin cannot
    change the store (both were open to any valid key before)."""
    server, _, keys = keyed

    def post(path: str, key: str, body: dict[str, object]) -> httpx.Response:
        return httpx.post(f"{server.url}{path}", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=60)

    denied = post("/tokenize", keys["other"], {"model": MODEL, "content": "hi"})
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "model_not_allowed"
    assert post("/tokenize", keys["scoped"], {"model": MODEL, "content": "hi"}).status_code == 200
    copy = post("/api/copy", keys["all"], {"source": MODEL, "destination": "mine"})
    assert copy.status_code == 403 and "--admin" in copy.json()["error"]
