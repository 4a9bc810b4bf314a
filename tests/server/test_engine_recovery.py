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
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
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
