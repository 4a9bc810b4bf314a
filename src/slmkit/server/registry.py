"""The models a server can serve, loaded on demand by the name clients use.

* Names: the models given at ``slm serve``, the store's and the embedded ones whose packages are
  installed (through ``store.resolve.resolve_model``; tags and aliases: ``store.aliases``).
  Request names are never paths.
* A model loads on first use; concurrent first requests share one load. A failed load
  answers every waiting request with the reason (500) and is forgotten, so the next request
  tries again.
* Each use sets the model's keep-alive (default from settings; 0 unloads as soon as it is
  idle, negative keeps it forever). The timer runs while the model is idle only.
* Before a load, idle models are unloaded least recently used first while the number of
  loaded models would pass ``max_loaded_models`` or their estimated memory (weights plus
  KV cache) the ``max_memory_bytes`` budget. A busy model is never unloaded; when every
  loaded model is busy the new one loads anyway and the limit is restored once some go idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

from slmkit.engine.base import Embedder, Engine
from slmkit.engine.factory import open_engine
from slmkit.engine.llamacpp.metadata import GgufFacts, read_facts
from slmkit.errors import ModelLoadError, ModelNotFound, SlmkitError, StoreError
from slmkit.server.clock import SYSTEM_CLOCK, Clock
from slmkit.server.loaded import LoadedModel, profile_template, sha256_of
from slmkit.settings import Settings
from slmkit.store.aliases import canonical_name
from slmkit.store.embedded import EMBEDDED
from slmkit.store.resolve import ResolvedModel, local_models, pullable, resolve_model, served_name

log = logging.getLogger("slmkit.server")
_REQUEST_NAME = re.compile(r"^[a-z0-9][a-z0-9._:-]{0,127}$")
REAP_INTERVAL_S = 0.5
ACQUIRE_GRACE_S = 1.0

AnyEngine = Engine | Embedder


class ModelRegistry:
    """Loads models on demand, keeps them for their keep-alive, evicts the least recently used."""

    def __init__(self, settings: Settings, clock: Clock = SYSTEM_CLOCK) -> None:
        self.settings = settings
        self.clock = clock
        self.started_at = int(time.time())
        self._specs: dict[str, str] = {}  # served name -> what to resolve
        self._kinds: dict[str, str] = {}  # served name -> chat | embedding, where known
        self._loaded: dict[str, LoadedModel] = {}
        self._loading: dict[str, asyncio.Task[LoadedModel]] = {}
        self._facts: dict[tuple[str, int, int], GgufFacts] = {}
        self._digests: dict[tuple[str, int, int], str] = {}
        self._wake: asyncio.Event | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._stopping = False
        self.default: str | None = None
        self.default_embedding: str | None = None

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        """Resolve the configured names, load the default chat model, start the reaper."""
        for spec in self.settings.server.models:
            try:
                resolved = await asyncio.to_thread(resolve_model, spec, self.settings.store.home)
            except StoreError as exc:  # a damaged file: its requests answer 500 with the reason
                log.warning("cannot read %s: %s", spec, exc.message)
                self._specs.setdefault(served_name(Path(spec).stem), spec)
                continue
            self._specs.setdefault(resolved.name, spec)
            try:
                facts = await asyncio.to_thread(self._read_facts, resolved.path)
                self._kinds[resolved.name] = "embedding" if facts.is_embedding else "chat"
            except SlmkitError as exc:  # a broken file: its requests will say why
                log.warning("cannot read %s: %s", resolved.path, exc.message)
        chat = [n for n in self._specs if self._kinds.get(n, "chat") == "chat"]
        embedding = [n for n in self._specs if self._kinds.get(n) == "embedding"]
        self.default = chat[0] if chat else None
        self.default_embedding = embedding[0] if embedding else None
        if self.default_embedding is None and EMBEDDED["all-minilm-l6-v2"].available():
            self.default_embedding = "all-minilm-l6-v2"
        self._wake = asyncio.Event()
        self._reaper = asyncio.create_task(self._reap(), name="slm-model-reaper")
        if self.default is not None:
            await self.acquire(self.default)

    def wake(self) -> None:
        """Check keep-alive deadlines now (after a request, or a test moving the clock)."""
        if self._wake is not None:
            self._wake.set()

    async def aclose(self) -> None:
        self._stopping = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for task in list(self._loading.values()):
            task.cancel()
        self.close()

    def close(self) -> None:
        for entry in list(self._loaded.values()):
            entry.engine.close()
        self._loaded.clear()

    # -- names ---------------------------------------------------------------------
    def canonical(self, name: str | None, kind: str = "chat") -> str:
        if not name:
            default = self.default_embedding if kind == "embedding" else self.default
            if default is None:
                raise ModelNotFound(f"no default {kind} model is configured; name one", param="model")
            return default
        return canonical_name(name, self.settings.store.home)

    def names(self) -> list[str]:
        """Every model this server can serve without a download, by served name: configured, the
        store's (pulled, created, copied, quantized, converted), embedded, loaded."""
        names = list(self._specs)
        names += [n for n in local_models(self.settings.store.home) if n not in names]
        names += [n for n in self._loaded if n not in names]
        return names

    def loaded_at(self, name: str) -> int:
        entry = self._loaded.get(self.canonical(name))
        return int(entry.loaded_at) if entry else self.started_at

    def loaded(self) -> list[LoadedModel]:
        return list(self._loaded.values())

    def entry(self, name: str) -> LoadedModel | None:
        """A loaded model's entry (its profile and compiled TEMPLATE among others)."""
        return self._loaded.get(self.canonical(name))

    def get(self, name: str | None) -> AnyEngine:
        """The engine of a loaded model (routes call ``acquire`` first)."""
        entry = self._loaded.get(self.canonical(name))
        if entry is None:
            raise ModelNotFound(f"The model '{name}' does not exist", param="model", model=name)
        return entry.engine  # type: ignore[no-any-return]

    def resolve(self, name: str | None, kind: str = "chat") -> ResolvedModel:
        """Where a served name's file is, without loading it (404 for unknown names)."""
        key = self.canonical(name, kind)
        spec = self._specs.get(key)
        configured = spec is not None  # `--model` may name a file; a request name never does
        if spec is None:
            if not _REQUEST_NAME.match(key) or key.endswith(".gguf"):
                raise ModelNotFound(f"The model '{name}' does not exist", param="model", model=name)
            spec = key
        try:
            resolved = resolve_model(spec, self.settings.store.home, allow_paths=configured)
        except ModelNotFound as exc:
            if spec in EMBEDDED:  # its message says which package to install
                raise
            hint = ", try pulling it first" if pullable(key) else ""  # Ollama's words
            raise ModelNotFound(f"The model '{name}' does not exist{hint}", param="model", model=name) from exc
        except StoreError as exc:  # e.g. a damaged file: 500 with the reason; the next request retries
            raise ModelLoadError(f"model '{key}' failed to load: {exc.message}") from exc
        return ResolvedModel(name=key, path=resolved.path, format=resolved.format, profile=resolved.profile,
                             digest=resolved.digest)

    async def facts(self, name: str | None, kind: str = "chat") -> tuple[ResolvedModel, GgufFacts]:
        resolved = await asyncio.to_thread(self.resolve, name, kind)
        return resolved, await asyncio.to_thread(self._read_facts, resolved.path)

    def _read_facts(self, path: Path) -> GgufFacts:
        if path.is_dir():  # an ONNX or MLX model folder: no GGUF header to read
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
            kind = "onnx" if (path / "genai_config.json").is_file() else "mlx"
            return GgufFacts(path=path, metadata={"general.architecture": kind}, size_bytes=size)
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._facts:
            self._facts[key] = read_facts(path)
        return self._facts[key]

    async def digest(self, path: Path) -> str:
        """sha256 of a model file (cached while the file is unchanged)."""
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
        if key not in self._digests:
            self._digests[key] = await asyncio.to_thread(sha256_of, path)
        return self._digests[key]

    # -- loading -------------------------------------------------------------------
    async def acquire(self, name: str | None, *, keep_alive: float | None = None, kind: str = "chat") -> AnyEngine:
        """The engine for ``name``, loading it first if needed; resets its keep-alive."""
        key = self.canonical(name, kind)
        while True:
            entry = self._loaded.get(key)
            if entry is not None and entry.failure is not None:  # its engine died: load it again
                log.error("model %s failed (%s): loading it again", key, entry.failure)
                await self._unload(entry, "engine failure")
                entry = None
            if entry is None:
                task = self._loading.get(key)
                if task is None:
                    task = asyncio.create_task(self._load(name, kind), name=f"slm-load-{key}")
                    self._loading[key] = task
                    task.add_done_callback(self._forget_load(key))
                entry = await asyncio.shield(task)
            if self._loaded.get(key) is entry:
                break
        entry.touch(self.settings.server.keep_alive if keep_alive is None else keep_alive)
        if self._wake is not None:
            self._wake.set()
        return entry.engine  # type: ignore[no-any-return]

    def _forget_load(self, key: str) -> Callable[[asyncio.Task[LoadedModel]], None]:
        def forget(_task: asyncio.Task[LoadedModel]) -> None:
            self._loading.pop(key, None)

        return forget

    async def unload(self, name: str | None, kind: str = "chat") -> bool:
        """Unload now if idle, else as soon as it is idle. False if it was not loaded."""
        entry = self._loaded.get(self.canonical(name, kind))
        if entry is None:
            return False
        entry.touch(0)
        if not entry.busy():
            await self._unload(entry, "keep_alive 0")
        return True

    async def _load(self, name: str | None, kind: str) -> LoadedModel:
        try:
            resolved = await asyncio.to_thread(self.resolve, name, kind)
        except ModelLoadError as exc:
            log.warning("model %s failed to load: %s", self.canonical(name, kind), exc.message)
            raise
        log.info("reading %s", resolved.path)
        try:
            facts = await asyncio.to_thread(self._read_facts, resolved.path)
        except SlmkitError as exc:
            log.warning("model %s failed to load: %s", resolved.name, exc.message)
            raise ModelLoadError(f"model '{resolved.name}' failed to load: {exc.message}") from exc
        memory = self._estimate(facts)
        await self._make_room(memory, exclude=resolved.name)
        started = time.perf_counter()
        engine_settings = self.settings.engine
        if resolved.profile is not None and resolved.profile.num_ctx:
            engine_settings = engine_settings.model_copy(update={"ctx_size": resolved.profile.num_ctx})
        log.info("loading %s from %s", resolved.name, resolved.path)
        try:
            engine = await asyncio.to_thread(open_engine, resolved.name, resolved.path, resolved.format,
                                             engine_settings, embedding=facts.is_embedding)
        except Exception as exc:
            reason = exc.message if isinstance(exc, SlmkitError) else str(exc)
            raise ModelLoadError(f"model '{resolved.name}' failed to load: {reason}") from exc
        seconds = time.perf_counter() - started
        entry = LoadedModel(name=resolved.name, engine=engine, facts=facts, path=resolved.path,
                            memory_bytes=memory, loaded_at=self.clock.time(), load_seconds=seconds, clock=self.clock,
                            profile=resolved.profile, template=profile_template(engine, resolved.profile))
        self._loaded[resolved.name] = entry
        self._kinds[resolved.name] = entry.kind
        log.info("loaded %s from %s in %.2fs", resolved.name, resolved.path, seconds)
        await self._make_room(0, exclude=resolved.name)
        return entry

    def _estimate(self, facts: GgufFacts) -> int:
        if facts.is_embedding:
            return facts.size_bytes
        engine = self.settings.engine
        return facts.size_bytes + facts.kv_bytes_per_token() * engine.parallel * engine.ctx_size

    async def _make_room(self, needed: int, *, exclude: str) -> None:
        limit = self.settings.server.max_loaded_models
        budget = self.settings.server.max_memory_bytes
        adding = 1 if needed else 0
        while True:
            count = len(self._loaded) + adding
            memory = sum(e.memory_bytes for e in self._loaded.values()) + needed
            if count <= limit and (budget is None or memory <= budget):
                return
            idle = sorted((e for e in self._loaded.values() if e.name != exclude and not e.busy()),
                          key=lambda e: e.last_used)
            if not idle:
                log.warning("over the model limit (%d loaded, %d bytes) but every model is busy", count, memory)
                return
            await self._unload(idle[0], "least recently used")

    async def _unload(self, entry: LoadedModel, why: str) -> None:
        if self._loaded.get(entry.name) is not entry:
            return
        del self._loaded[entry.name]
        await asyncio.to_thread(entry.engine.close)
        log.info("unloaded %s (%s)", entry.name, why)

    async def _reap(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            now = self.clock.monotonic()
            for entry in list(self._loaded.values()):
                if entry.deadline is None:
                    continue
                # the keep-alive counts from the end of the last request; a request that has
                # just acquired the model is still on its way to the engine
                if entry.busy() or now - entry.last_used < ACQUIRE_GRACE_S:
                    entry.deadline = now + max(0.0, entry.keep_alive)
                elif now >= entry.deadline:
                    await self._unload(entry, "keep_alive expired")
            deadlines = [e.deadline - now for e in self._loaded.values() if e.deadline is not None]
            wait = min([REAP_INTERVAL_S, *deadlines])
            # asyncio.wait, not wait_for: Python 3.11's wait_for can swallow the cancellation
            # that aclose sends when the event fires at the same moment, and the reaper never ends
            waiter = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({waiter}, timeout=max(0.02, wait))
            finally:
                waiter.cancel()
            self._wake.clear()
