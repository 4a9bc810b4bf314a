"""Names carry tags and lists tell the truth (issue 15, Ollama items 1 and 2), in process.

/api/tags, /api/ps and /api/show name models ``name:tag`` (``:latest`` when untagged); every
door takes both forms and the catalog's Ollama-style aliases (``smollm2:135m``); /api/tags and
/v1/models list every store and embedded model at once, before any request. The other doors
(the Python API, ``slm run``) are in test_door_matrix.py and tests/cli/test_names_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmkit.settings import Settings, load_settings
from slmkit.store.embedded import EMBEDDED
from slmkit.store.store import Store
from tests.fakehub import FakeHub, HubFile
from tests.inprocess import MODEL, Engines, app_client, make_key, make_profile, settings
from tests.store.test_hub_pull import QWEN_REPO, hub, in_process_hub

__all__ = ["hub", "in_process_hub"]

pytestmark = pytest.mark.asyncio
TUNED = f"FROM {MODEL}\nPARAMETER temperature 0.2\n"


def _serving(home: Path, models: list[str]) -> Settings:
    return load_settings(store__home=home, server__models=models, engine__ctx_size=2048)


def _chat(model: str) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": False}


def _store_models(home: Path) -> None:
    """One model of each way into the store without a download: created, copied, pulled (package)."""
    make_profile(home, "tuned", TUNED)
    Store(home).copy("tuned", "tuned-copy:v2")


async def test_lists_name_every_servable_model_before_any_request(home: Path, engines: Engines) -> None:
    _store_models(home)
    async with app_client(_serving(home, [])) as client:  # nothing configured, nothing loaded
        tags = [m["name"] for m in (await client.get("/api/tags")).json()["models"]]
        ids = [m["id"] for m in (await client.get("/v1/models")).json()["data"]]
        assert {"tuned:latest", "tuned-copy:v2", f"{MODEL}:latest", "all-minilm-l6-v2:latest"} <= set(tags)
        assert {"tuned", "tuned-copy:v2", MODEL} <= set(ids)
        assert all(":" in name for name in tags) and [m for m in tags if m.startswith("tuned:")] == ["tuned:latest"]
        assert not engines.opened  # listing loads nothing
        for name in ids:  # every listed id can be sent back
            if name.startswith("all-minilm"):
                continue
            r = await client.post("/v1/chat/completions", json=_chat(name))
            assert r.status_code == 200, (name, r.text)
            assert r.json()["model"] == name


async def test_tags_ps_and_show_use_name_and_tag(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        entry = next(m for m in (await client.get("/api/tags")).json()["models"] if m["name"].startswith(MODEL))
        assert entry["name"] == entry["model"] == f"{MODEL}:latest" and len(entry["digest"]) == 64
        ps = (await client.get("/api/ps")).json()["models"]
        assert [(m["name"], m["model"]) for m in ps] == [(f"{MODEL}:latest", f"{MODEL}:latest")]
        for name in (MODEL, f"{MODEL}:latest", "smollm2:135m", "SmolLM2:135M"):
            show = await client.post("/api/show", json={"model": name})
            assert show.status_code == 200, (name, show.text)
            assert f"# model: {MODEL}:latest " in show.json()["modelfile"]


@pytest.mark.parametrize("name", [f"{MODEL}:latest", "smollm2:135m", "SmolLM2-135M-Instruct:latest"])
@pytest.mark.parametrize(("path", "body"), [
    ("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/api/generate", {"prompt": "hi"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/completions", {"prompt": "hi"}),
])
async def test_tag_and_alias_reach_the_one_model(name: str, path: str, body: dict[str, object], home: Path,
                                                 engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        r = await client.post(path, json={"model": name, "stream": False, **body})
        assert r.status_code == 200, r.text
        assert list(engines.opened) == [MODEL] and engines[MODEL].requests  # one model, not a second load
        assert (await client.get(f"/v1/models/{name}")).json()["id"] == MODEL


async def test_open_webui_adds_latest_and_finds_it_in_tags(home: Path, engines: Engines) -> None:
    """Open WebUI (and LangChain's validate_model_on_init) add ':latest' to an untagged name and look
    for it among /api/tags' names."""
    _store_models(home)
    async with app_client(settings(home)) as client:
        listed = {m["model"] for m in (await client.get("/api/tags")).json()["models"]}
        for model_id in [m["id"] for m in (await client.get("/v1/models")).json()["data"]]:
            looked_up = model_id if ":" in model_id else f"{model_id}:latest"
            assert looked_up in listed, looked_up
        r = await client.post("/api/chat", json=_chat("tuned:latest"))
        assert r.status_code == 200 and r.json()["model"] == "tuned:latest"


async def test_a_store_model_named_like_an_alias_wins(home: Path, engines: Engines) -> None:
    make_profile(home, "smollm2:135m", f"FROM {MODEL}\nSYSTEM mine\n")
    async with app_client(settings(home)) as client:
        assert (await client.post("/api/chat", json=_chat("smollm2:135m"))).status_code == 200
        assert "smollm2:135m" in engines.opened  # the store's model, not the embedded one it aliases
        assert "smollm2:135m" in [m["name"] for m in (await client.get("/api/tags")).json()["models"]]


async def test_pull_by_alias_saves_it_under_the_alias(home: Path, engines: Engines) -> None:
    async with app_client(settings(home)) as client:
        r = await client.post("/api/pull", json={"model": "smollm2:135m", "stream": False})
        assert r.status_code == 200, r.text
        assert Store(home).find("smollm2:135m") is not None  # the embedded package, saved as Ollama names it
        assert "smollm2:135m" in [m["name"] for m in (await client.get("/api/tags")).json()["models"]]
        missing = await client.post("/api/chat", json=_chat("qwen3:4b"))
        assert missing.status_code == 404 and "pull" in missing.json()["error"]


async def test_a_key_scoped_by_tag_or_alias(home: Path, engines: Engines) -> None:
    config = settings(home)
    for scope in ([f"{MODEL}:latest"], ["smollm2:135m"]):
        key = make_key(config, models=scope)
        async with app_client(config, key) as client:
            assert [m["name"] for m in (await client.get("/api/tags")).json()["models"]] == [f"{MODEL}:latest"]
            assert (await client.post("/api/chat", json=_chat(MODEL))).status_code == 200


async def test_api_pull_of_a_catalog_alias(in_process_hub: FakeHub, home: Path, engines: Engines) -> None:
    """/api/pull qwen3:0.6b fetches the catalog's build (from the local fake Hub) and lists it as
    qwen3:0.6b, the name LangChain and Open WebUI then look for."""
    data = EMBEDDED[MODEL].path().read_bytes()
    in_process_hub.repos[QWEN_REPO] = {"Qwen3-0.6B-Q4_K_M.gguf": HubFile(data)}
    async with app_client(settings(home)) as client:
        r = await client.post("/api/pull", json={"model": "qwen3:0.6b", "stream": False})
        assert r.status_code == 200, r.text
        assert "qwen3:0.6b" in [m["name"] for m in (await client.get("/api/tags")).json()["models"]]
        assert (await client.post("/api/chat", json=_chat("qwen3:0.6b"))).status_code == 200
        assert "qwen3:0.6b" in engines.opened


@pytest.mark.parametrize("configured", ["smollm2:135m", f"{MODEL}:latest"])
async def test_serve_takes_tags_and_aliases(configured: str, home: Path, engines: Engines) -> None:
    """``slm serve smollm2:135m`` (the names given at start resolve as request names do)."""
    async with app_client(_serving(home, [configured])) as client:
        assert list(engines.opened) == [MODEL]  # the default model, loaded at start under its served name
        r = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and engines[MODEL].requests
        assert [m["id"] for m in (await client.get("/v1/models")).json()["data"]].count(MODEL) == 1
