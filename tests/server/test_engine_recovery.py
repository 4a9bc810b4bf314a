"""A scheduler thread that dies: /ready turns 503, /health says why, and the next request loads
the model again (in process, through ASGITransport)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from slmkit.engine.base import GenerationRequest
from slmkit.server.app import create_app
from slmkit.settings import load_settings
from tests.conftest import MODEL


async def _recovery(home: Path) -> None:
    # a store of its own: keys that other tests created in the session's store would ask for auth
    app = create_app(load_settings(engine__parallel=1, engine__ctx_size=256, engine__threads=2, store__home=home))
    registry = app.state.service.registry
    await registry.start()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            assert (await client.get("/ready")).status_code == 200
            broken = registry.get(MODEL)

            def crash() -> None:
                raise SystemError("injected scheduler bug")

            broken.scheduler._admit = crash
            events = [e async for e in broken.generate(GenerationRequest(prompt=[1, 2, 3], max_tokens=2))]
            assert events[-1].error and "injected scheduler bug" in events[-1].error
            await asyncio.to_thread(broken.scheduler.thread.join, 30)
            ready = await client.get("/ready")
            assert ready.status_code == 503 and "loads again" in ready.json()["reason"]
            assert "injected scheduler bug" in (await client.get("/health")).json()["engines"][MODEL]
            reply = await client.post("/v1/completions", json={"model": MODEL, "prompt": "Hi", "max_tokens": 1})
            assert reply.status_code == 200, reply.text
            assert registry.get(MODEL) is not broken
            assert (await client.get("/ready")).status_code == 200
            assert (await client.get("/health")).json()["engines"][MODEL] == "ok"
    finally:
        await registry.aclose()


def test_a_dead_scheduler_turns_ready_503_and_the_model_reloads(tmp_path: Path) -> None:
    asyncio.run(_recovery(tmp_path))


async def _short_keep_alive(home: Path) -> list[int]:
    app = create_app(load_settings(engine__parallel=2, engine__ctx_size=512, engine__threads=2, store__home=home))
    registry = app.state.service.registry
    await registry.start()
    codes: list[int] = []
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            async def poll() -> None:  # (not /api/ps: its first call hashes the model file)
                for _ in range(15):
                    codes.append((await client.get("/health")).status_code)
                    await asyncio.sleep(0.02)

            async def generate(keep_alive: str) -> None:  # 1ns: due for unloading at once
                body = {"model": MODEL, "prompt": "word " * 8, "raw": True, "stream": False, "keep_alive": keep_alive,
                        "options": {"num_predict": 1}}
                codes.append((await client.post("/api/generate", json=body)).status_code)

            await asyncio.gather(poll(), generate("1ns"), generate("1ns"))
    finally:
        await registry.aclose()
    return codes


def test_a_short_keep_alive_never_frees_a_model_in_use(tmp_path: Path) -> None:
    """Prompts are tokenized in worker threads, so the reaper may run between a request's steps:
    it must not unload the model under it (a 404, or llama.cpp aborting on a freed vocabulary,
    as this branch did before ``Lifetime`` and the acquire grace)."""
    codes = asyncio.run(_short_keep_alive(tmp_path))
    assert set(codes) == {200}
