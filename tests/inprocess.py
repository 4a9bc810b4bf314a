"""The in-process test layer: the real app (every route, the guard, the use-case layer) over
``httpx.ASGITransport`` with ``FakeEngine`` in place of llama.cpp: no sockets, no model."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from slmkit.server.app import create_app
from slmkit.server.auth import KeyStore
from slmkit.server.clock import SYSTEM_CLOCK, Clock
from slmkit.settings import EngineSettings, Settings, load_settings
from slmkit.store.create import create
from slmkit.store.modelfile import parse_modelfile
from slmkit.store.store import Store
from tests.fake_engine import FakeEmbedder, FakeEngine

MODEL = "smollm2-135m-instruct"  # an embedded model: its GGUF header is read, its engine is fake
client_app: contextvars.ContextVar[Any] = contextvars.ContextVar("client_app")  # the app app_client serves


@dataclass
class Engines:
    """The fake engines the app opened, by model name; ``reply`` scripts the next ones."""

    opened: dict[str, FakeEngine] = field(default_factory=dict)
    reply: Any = "Hello from the fake engine."

    def open(self, name: str, path: Path, fmt: str, settings: EngineSettings, *, embedding: bool = False) -> Any:
        engine: Any = FakeEmbedder(name) if embedding else FakeEngine(name, reply=self.reply,
                                                                      context_length=settings.ctx_size)
        self.opened[name] = engine
        return engine

    def __getitem__(self, name: str) -> FakeEngine:
        return self.opened[name]


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> Engines:
    """Every engine any door opens (server, Python API, ``slm run``) is a FakeEngine."""
    fakes = Engines()
    monkeypatch.setattr("slmkit.server.registry.open_engine", fakes.open)
    return fakes


def settings(home: Path, **overrides: Any) -> Settings:
    return load_settings(store__home=home, server__models=[MODEL], engine__ctx_size=2048, **overrides)


class ManualClock(Clock):
    """Time that moves only when a test says so."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def monotonic(self) -> float:
        return super().monotonic() + self.offset

    def time(self) -> float:
        return super().time() + self.offset


@contextlib.asynccontextmanager
async def app_client(config: Settings, api_key: str | None = None,
                     clock: Clock = SYSTEM_CLOCK) -> AsyncIterator[httpx.AsyncClient]:
    """The app, started (lifespan) and served in process."""
    app = create_app(config, clock)
    client_app.set(app)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers,
                                     timeout=30) as client:
            yield client


def make_profile(home: Path, name: str, modelfile: str) -> None:
    """``slm create NAME`` from a Modelfile, into the store at ``home``."""
    create(Store(home), name, parse_modelfile(modelfile))


def make_key(config: Settings, clock: Clock = SYSTEM_CLOCK, **scope: Any) -> str:
    key, _ = KeyStore(config.keys_db, clock).create("test", **scope)
    return key


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "slm-home"
