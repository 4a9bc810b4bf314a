"""Keep-alive, key expiry and rate windows on an injected clock: no sleeping for time to pass."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.inprocess import MODEL, Engines, ManualClock, app_client, client_app, make_key, settings

pytestmark = pytest.mark.asyncio
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "stream": False}


async def test_key_expires_when_its_time_comes(home: Path, engines: Engines) -> None:
    clock = ManualClock()
    config = settings(home)
    key = make_key(config, clock, ttl_s=30)
    async with app_client(config, key, clock) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        clock.advance(31)
        r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_rate_window_reopens_after_a_minute(home: Path, engines: Engines) -> None:
    clock = ManualClock()
    config = settings(home)
    key = make_key(config, clock, rpm=1)
    async with app_client(config, key, clock) as client:
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200
        r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        clock.advance(61)
        assert (await client.post("/v1/chat/completions", json=CHAT)).status_code == 200


async def test_keep_alive_unloads_once_idle(home: Path, engines: Engines) -> None:
    clock = ManualClock()
    async with app_client(settings(home), None, clock) as client:
        r = await client.post("/api/chat", json={**CHAT, "keep_alive": "10s"})
        assert r.status_code == 200
        registry = client_app.get().state.service.registry
        clock.advance(5)
        registry.wake()
        await asyncio.sleep(0.05)
        assert MODEL in {e.name for e in registry.loaded()}  # 5 s idle of 10
        clock.advance(6)
        registry.wake()
        for _ in range(100):
            await asyncio.sleep(0.02)
            if not registry.loaded():
                break
        assert not registry.loaded() and engines[MODEL].closed
        ps = (await client.get("/api/ps")).json()
        assert ps == {"models": []}
