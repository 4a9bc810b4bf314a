"""The pytest plugin for apps built on small language models (registered as ``slmkit`` through
the ``pytest11`` entry point, so installing slmkit enables it).

Fixtures:

* ``slm_server``: a real ``slm serve`` on a free loopback port (``.url``, ``.base_url`` for the
  OpenAI SDK, ``.port``). One server per configuration for the whole session.
* ``slm_model``: the model loaded in this process (``slmkit.load``), one per configuration for
  the whole session.
* ``slm_client``: an ``httpx.Client`` on ``slm_server.url``.

Configuration, most specific first: the marker ``@pytest.mark.slm(model=..., args=[...],
**engine_options)`` on a test, module or class; the command line ``--slm-model``; the ini options
``slm_model``, ``slm_server_args`` and ``slm_engine_options`` (``key=value`` lines). The default
model is the embedded SmolLM2-135M-Instruct.

Helpers: ``assert_json_schema``, ``assert_mentions``, ``assert_not_mentions``, ``extract_json``
and ``DETERMINISTIC`` (sampling options that make answers repeatable).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest

from slmkit.testing.asserts import (
    DETERMINISTIC,
    assert_json_schema,
    assert_mentions,
    assert_not_mentions,
    extract_json,
    mentions,
    normalize,
)

if TYPE_CHECKING:
    from slmkit.api import Model
    from slmkit.server.process import ServeProcess

T = TypeVar("T")

__all__ = [
    "DETERMINISTIC",
    "SlmConfig",
    "assert_json_schema",
    "assert_mentions",
    "assert_not_mentions",
    "extract_json",
    "mentions",
    "normalize",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("slmkit", "small language models (slmkit)")
    group.addoption("--slm-model", default=None, help="model for the slm_server / slm_model fixtures")
    parser.addini("slm_model", "model for the slm_server / slm_model fixtures [embedded SmolLM2]", default="")
    parser.addini("slm_server_args", "extra `slm serve` arguments of the slm_server fixture", type="args",
                  default=[])
    parser.addini("slm_engine_options", "engine options (key=value lines) of both fixtures", type="linelist",
                  default=[])


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slm(model=None, args=(), **engine_options): the model, `slm serve` arguments and engine "
        "options (parallel, ctx_size, threads, ...) of the slm_server / slm_model fixtures")


@dataclass(frozen=True)
class SlmConfig:
    """What the fixtures start: a model name (None: the default) and its options."""

    model: str | None = None
    args: tuple[str, ...] = ()
    engine_options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def for_request(cls, request: pytest.FixtureRequest) -> SlmConfig:
        config = request.config
        model = config.getoption("--slm-model") or config.getini("slm_model") or None
        args = tuple(config.getini("slm_server_args"))
        options = dict(_parse_option(line) for line in config.getini("slm_engine_options") if line.strip())
        marker = request.node.get_closest_marker("slm")
        if marker is not None:
            kwargs = dict(marker.kwargs)
            model = kwargs.pop("model", marker.args[0] if marker.args else model)
            extra = kwargs.pop("args", ())
            args += tuple(shlex.split(extra) if isinstance(extra, str) else extra)
            options.update(kwargs)
        return cls(model=model, args=args, engine_options=tuple(sorted(options.items())))

    def serve_args(self) -> list[str]:
        out = ["--model", self.model] if self.model else []
        for key, value in self.engine_options:
            out += [f"--{key.replace('_', '-')}", str(value)]
        return [*out, *self.args]


def _parse_option(line: str) -> tuple[str, Any]:
    key, sep, value = line.partition("=")
    if not sep:
        raise pytest.UsageError(f"slm_engine_options: expected key=value, got {line!r}")
    text = value.strip()
    return key.strip(), int(text) if text.lstrip("-").isdigit() else text


@dataclass
class SlmPool:
    """The servers and models started in this session, by configuration."""

    servers: dict[SlmConfig, ServeProcess] = field(default_factory=dict)
    models: dict[SlmConfig, Model] = field(default_factory=dict)

    def server(self, config: SlmConfig) -> ServeProcess:
        if config not in self.servers:
            from slmkit.server.process import ServeProcess

            self.servers[config] = ServeProcess(config.serve_args())
        return self.servers[config]

    def model(self, config: SlmConfig) -> Model:
        if config not in self.models:
            from slmkit.api import load

            self.models[config] = load(config.model, **dict(config.engine_options))
        return self.models[config]

    def close(self) -> None:
        for server in self.servers.values():
            server.close()
        for model in self.models.values():
            model.close()
        self.servers.clear()
        self.models.clear()


@pytest.fixture(scope="session")
def slm_pool() -> Iterator[SlmPool]:
    """Every server and model the fixtures started; all stop when the session ends."""
    pool = SlmPool()
    yield pool
    pool.close()


@pytest.fixture
def slm_server(request: pytest.FixtureRequest, slm_pool: SlmPool) -> ServeProcess:
    """A running ``slm serve`` (started once per configuration for the session)."""
    return _started("slm_server could not start", slm_pool.server, request)


@pytest.fixture
def slm_model(request: pytest.FixtureRequest, slm_pool: SlmPool) -> Model:
    """The model loaded in this process (once per configuration for the session)."""
    return _started("slm_model could not load", slm_pool.model, request)


def _started(failure: str, start: Callable[[SlmConfig], T], request: pytest.FixtureRequest) -> T:
    """``start`` for the test's configuration; a failure fails the test with one line."""
    try:
        return start(SlmConfig.for_request(request))
    except Exception as exc:
        pytest.fail(f"{failure}: {exc}", pytrace=False)


@pytest.fixture
def slm_client(slm_server: ServeProcess) -> Iterator[httpx.Client]:
    """An httpx client on the ``slm_server`` (paths such as ``/v1/chat/completions``, ``/api/chat``)."""
    with httpx.Client(base_url=slm_server.url, timeout=120.0, trust_env=False) as client:
        yield client
