"""Streams under abuse: 100 clients that drop their stream at random points (no slot leaks, flat
memory, every drop counted as ``abort``), and overload (what is admitted completes whole, the rest
get 429 with Retry-After)."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time

import httpx

from tests.conftest import MODEL
from tests.helpers import ServerProcess
from tests.reliability.conftest import rss_kib, still_serves

STORY = [{"role": "user", "content": "Tell me a long story about a dragon."}]
DROPS = 100
RSS_SLACK_KIB = 64 * 1024


def _aborts(server: ServerProcess) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    found = re.findall(r'slm_requests_total\{finish_reason="abort",model="[^"]+"\} ([0-9.e+]+)', text)
    return sum(float(v) for v in found)


async def _drop(client: httpx.AsyncClient, rng: random.Random) -> str:
    """One stream, dropped after a random number of frames: 'dropped', 'finished' or 'refused'."""
    body = {"model": MODEL, "messages": STORY, "max_tokens": 48, "stream": True}
    stop_after = rng.randint(0, 3)
    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        if resp.status_code == 429:
            return "refused"
        assert resp.status_code == 200
        frames = 0
        async for line in resp.aiter_lines():
            if line == "data: [DONE]":
                return "finished"
            frames += line.startswith("data: ")
            if frames > stop_after:
                break
    return "dropped"


async def _wait_idle(server: ServerProcess, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        slots = httpx.get(f"{server.url}/slots", timeout=30).json()[MODEL]
        if (slots["running"] == 0 and slots["waiting"] == 0) or time.monotonic() > deadline:
            return slots  # type: ignore[no-any-return]
        await asyncio.sleep(0.2)


async def test_a_disconnect_storm_leaks_no_slot_and_no_memory(rserver: ServerProcess) -> None:
    rng = random.Random(17)
    outcomes: list[str] = []
    async with httpx.AsyncClient(base_url=rserver.url, timeout=120) as client:
        outcomes += await asyncio.gather(*(_drop(client, rng) for _ in range(4)))  # warm up, then measure
        await _wait_idle(rserver)
        rss_before, aborts_before = rss_kib(rserver.pid), _aborts(rserver)
        while outcomes.count("dropped") < DROPS + outcomes[:4].count("dropped"):
            outcomes += await asyncio.gather(*(_drop(client, rng) for _ in range(4)))
    slots = await _wait_idle(rserver)
    assert slots["running"] == 0 and slots["waiting"] == 0, slots
    assert not any(s["busy"] for s in slots["slots"])  # type: ignore[attr-defined]
    dropped = outcomes[4:].count("dropped")
    assert _aborts(rserver) - aborts_before >= dropped  # each drop counted as finish_reason="abort"
    assert rss_kib(rserver.pid) - rss_before < RSS_SLACK_KIB
    still_serves(rserver)


async def _whole(client: httpx.AsyncClient) -> tuple[int, str | None, list[str]]:
    body = {"model": MODEL, "messages": STORY, "max_tokens": 6, "stream": True, "temperature": 0}
    async with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        if resp.status_code != 200:
            await resp.aread()
            return resp.status_code, resp.headers.get("retry-after"), [resp.text]
        return 200, None, [line async for line in resp.aiter_lines() if line.startswith("data: ")]


async def test_overload_admits_whole_requests_and_refuses_the_rest(rserver: ServerProcess) -> None:
    await _wait_idle(rserver)
    async with httpx.AsyncClient(base_url=rserver.url, timeout=120) as client:
        results = await asyncio.gather(*(_whole(client) for _ in range(12)))  # 2 slots + 2 waiting
    admitted = [frames for status, _, frames in results if status == 200]
    refused = [(after, frames) for status, after, frames in results if status == 429]
    assert len(admitted) + len(refused) == len(results), [r[0] for r in results]
    assert admitted and refused
    for frames in admitted:
        assert frames[-1] == "data: [DONE]"
        finishes = [json.loads(f[6:])["choices"][0]["finish_reason"] for f in frames[:-1]
                    if json.loads(f[6:]).get("choices")]
        assert finishes[-1] in ("stop", "length")
    for after, frames in refused:
        assert after is not None and int(after) >= 1
        assert json.loads(frames[0])["error"]["code"] == "server_overloaded"
    still_serves(rserver)
