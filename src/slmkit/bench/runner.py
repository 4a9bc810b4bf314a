"""The load generator: concurrency sweeps and Poisson request rates over one or several
endpoints, interleaved (each repeat visits every level, endpoints in rotating order) so that
drift of a shared machine hits all of them alike."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from slmkit.bench.protocols import Endpoint, SendOptions, count_missing_tokens, discover, error_kind, send
from slmkit.bench.records import RequestRecord, summarize
from slmkit.bench.resources import ProcessWatcher
from slmkit.bench.workload import Workload, salted
from slmkit.errors import SlmkitError


@dataclass(frozen=True)
class Level:
    """One point of a sweep: a fixed number of concurrent clients, or Poisson arrivals."""

    mode: str  # "concurrency" | "rate"
    value: float

    @property
    def name(self) -> str:
        return f"c={int(self.value)}" if self.mode == "concurrency" else f"rate={self.value:g}/s"


@dataclass
class BenchConfig:
    levels: list[Level] = field(default_factory=lambda: [Level("concurrency", 1)])
    requests: int | None = None  # per run; default 4x concurrency (at least 8), 16 in rate mode
    duration_s: float | None = None  # per run: stop sending after this long
    max_concurrency: int | None = None  # cap on in-flight requests in rate mode
    warmup: int = 2
    repeats: int = 1
    timeout_s: float = 300.0
    seed: int = 0
    send: SendOptions = field(default_factory=SendOptions)
    salt: str | None = None  # each run's prompts start with "[SALT.N]" (N: the run's number); None: unsalted

    def request_limit(self, level: Level) -> int | None:
        if self.requests is not None:
            return self.requests
        if self.duration_s is not None:
            return None
        return max(8, 4 * int(level.value)) if level.mode == "concurrency" else 16


class Progress(Protocol):
    def run_started(self, label: str, total: int | None) -> None: ...

    def request_done(self, record: RequestRecord) -> None: ...

    def run_finished(self, run: dict[str, Any]) -> None: ...


class NoProgress:
    def run_started(self, label: str, total: int | None) -> None:
        pass

    def request_done(self, record: RequestRecord) -> None:
        pass

    def run_finished(self, run: dict[str, Any]) -> None:
        pass


@dataclass
class BenchOutcome:
    runs: list[dict[str, Any]]
    endpoints: list[dict[str, Any]]
    partial: bool = False
    partial_reason: str | None = None


class BenchRunner:
    def __init__(self, endpoints: Sequence[Endpoint], workload: Workload, config: BenchConfig,
                 progress: Progress | None = None) -> None:
        self.endpoints = list(endpoints)
        self.workload = workload
        self.config = config
        self.progress = progress or NoProgress()
        self.watchers = {ep.label: ProcessWatcher(ep.pid) for ep in self.endpoints if ep.pid}
        self.runs: list[dict[str, Any]] = []
        self.problems: dict[str, str] = {}  # endpoint label -> why it dropped out
        self._counter = itertools.count()
        self.salt: str | None = None  # the current run's

    def _run_salt(self, name: str) -> str | None:
        return f"{self.config.salt}.{name}" if self.config.salt else None

    async def run(self, stop: asyncio.Event) -> BenchOutcome:
        """Run everything; returns what was measured, marked partial after a stop or a failure."""
        async with self._client() as client:
            live = [ep for ep in self.endpoints if await self._prepare(client, ep, stop)]
            for repeat, level in itertools.product(range(self.config.repeats), self.config.levels):
                shift = repeat % max(1, len(live))
                for ep in live[shift:] + live[:shift]:
                    if stop.is_set() or ep.label in self.problems:
                        continue
                    await self._run_level(client, ep, level, repeat, stop)
        return self._outcome(stop)

    def _client(self) -> httpx.AsyncClient:
        timeout = httpx.Timeout(self.config.timeout_s, connect=5.0)
        return httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=None), trust_env=False)

    async def _prepare(self, client: httpx.AsyncClient, ep: Endpoint, stop: asyncio.Event) -> bool:
        """Find the model and tokenizer, then warm up; False drops the endpoint."""
        try:
            await discover(client, ep)
        except httpx.HTTPStatusError as exc:
            self.problems[ep.label] = (f"{ep.root} did not answer as an {ep.api} server: HTTP "
                                       f"{exc.response.status_code} on {exc.request.url.path}")
            return False
        except httpx.HTTPError as exc:
            self.problems[ep.label] = f"cannot reach {ep.root}: {_reason(exc)}"
            return False
        except (SlmkitError, ValueError, KeyError) as exc:
            self.problems[ep.label] = f"{ep.root} did not answer as an {ep.api} server: {exc}"
            return False
        warming = getattr(self.progress, "warmup", None)  # optional: (label, done, total)
        for i in range(self.config.warmup):
            if stop.is_set():
                return False
            if warming:
                warming(ep.label, i, self.config.warmup)
            record = RequestRecord(index=1_000_000 + i, start_s=0.0)  # not recorded; its own seeds
            prompt = salted(self.workload.item(i), self._run_salt(f"w{self.endpoints.index(ep)}"))
            await send(client, ep, prompt, self.config.send, record)
            if warming:
                warming(ep.label, i + 1, self.config.warmup)
            if record.error_kind == "connect":
                self.problems[ep.label] = f"cannot reach {ep.root}: {record.error}"
                return False
        return True

    async def _run_level(self, client: httpx.AsyncClient, ep: Endpoint, level: Level, repeat: int,
                         stop: asyncio.Event) -> None:
        label = f"{ep.label} {level.name} #{repeat + 1}"
        self.progress.run_started(label, self.config.request_limit(level))
        watcher = self.watchers.get(ep.label)
        if watcher:
            watcher.start()
        self.salt = self._run_salt(str(len(self.runs) + 1))
        start = time.perf_counter()
        records: list[RequestRecord] = []
        body = self._closed_loop if level.mode == "concurrency" else self._open_loop
        await body(client, ep, level, records, start, stop)
        duration = time.perf_counter() - start
        resources = watcher.stop() if watcher else None
        await count_missing_tokens(client, ep, records)
        run = {"endpoint": ep.label, "repeat": repeat, "mode": level.mode,
               "concurrency": int(level.value) if level.mode == "concurrency" else None,
               "rate": level.value if level.mode == "rate" else None,
               "interrupted": stop.is_set(), "salt": self.salt, **summarize(records, duration),
               "resources": resources,
               "per_request": [r.to_json() for r in sorted(records, key=lambda r: r.start_s)]}
        self.runs.append(run)
        self.progress.run_finished(run)
        if records and all(r.error_kind == "connect" for r in records):
            self.problems[ep.label] = f"{ep.root} became unreachable: {records[0].error}"

    def _new_record(self, start: float, records: list[RequestRecord]) -> RequestRecord:
        record = RequestRecord(index=next(self._counter), start_s=time.perf_counter() - start)
        records.append(record)
        return record

    async def _send(self, client: httpx.AsyncClient, ep: Endpoint, record: RequestRecord) -> None:
        try:
            await send(client, ep, salted(self.workload.item(record.index), self.salt), self.config.send, record)
        except asyncio.CancelledError:
            record.error_kind, record.error = "cancelled", "stopped before the response ended"
            raise
        self.progress.request_done(record)

    async def _closed_loop(self, client: httpx.AsyncClient, ep: Endpoint, level: Level,
                           records: list[RequestRecord], start: float, stop: asyncio.Event) -> None:
        """``level.value`` clients, each sending its next request when the last one ends."""
        limit, deadline = self.config.request_limit(level), self._deadline(start)
        issued = itertools.count()

        async def client_loop() -> None:
            while not stop.is_set() and (limit is None or next(issued) < limit):
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                await self._send(client, ep, self._new_record(start, records))

        await _until_stopped([client_loop() for _ in range(int(level.value))], stop)

    async def _open_loop(self, client: httpx.AsyncClient, ep: Endpoint, level: Level,
                         records: list[RequestRecord], start: float, stop: asyncio.Event) -> None:
        """Poisson arrivals at ``level.value`` requests/s (seeded), optionally capped in flight."""
        limit, deadline = self.config.request_limit(level), self._deadline(start)
        rng = random.Random(self.config.seed * 1000 + int(level.value * 1000))
        cap = asyncio.Semaphore(self.config.max_concurrency) if self.config.max_concurrency else None
        tasks: list[asyncio.Task[None]] = []

        async def one() -> None:
            if cap is None:
                await self._send(client, ep, self._new_record(start, records))
                return
            async with cap:
                await self._send(client, ep, self._new_record(start, records))

        sent = 0
        while not stop.is_set() and (limit is None or sent < limit):
            if deadline is not None and time.perf_counter() >= deadline:
                break
            tasks.append(asyncio.create_task(one()))
            sent += 1
            with contextlib.suppress(asyncio.TimeoutError):  # distinct from TimeoutError before 3.11
                await asyncio.wait_for(stop.wait(), timeout=rng.expovariate(level.value))
        await _until_stopped(tasks, stop)

    def _deadline(self, start: float) -> float | None:
        return None if self.config.duration_s is None else start + self.config.duration_s

    def _outcome(self, stop: asyncio.Event) -> BenchOutcome:
        endpoints = [{"label": ep.label, "url": ep.url, "api": ep.api, "model": ep.model, "pid": ep.pid,
                      "token_counting": "usage, else " + (ep.tokenize_route or "stream chunks"),
                      "problem": self.problems.get(ep.label)} for ep in self.endpoints]
        reasons = list(self.problems.values())
        if stop.is_set():
            reasons.insert(0, "interrupted")
        return BenchOutcome(self.runs, endpoints, partial=bool(reasons), partial_reason="; ".join(reasons) or None)


async def _until_stopped(coros: Sequence[Awaitable[None]], stop: asyncio.Event) -> None:
    """Await all; when ``stop`` is set first, cancel what is still running."""
    tasks = [c if isinstance(c, asyncio.Task) else asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return
    stopper = asyncio.create_task(stop.wait())
    try:
        pending: set[asyncio.Future[Any]] = set(tasks)
        while pending - {stopper}:
            done, pending = await asyncio.wait(pending | {stopper}, return_when=asyncio.FIRST_COMPLETED)
            if stopper in done:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                return
            pending.discard(stopper)
    finally:
        stopper.cancel()


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{error_kind(exc)} error ({text})"


