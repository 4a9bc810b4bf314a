"""A local server's footprint (peak RSS, CPU time) and `slm serve` started for a bench."""

from __future__ import annotations

import threading
import time
from typing import Any

import psutil

from slmkit.errors import InvalidRequest
from slmkit.server.process import ServeProcess


class ProcessWatcher:
    """Samples a process (and its children) every ``interval`` seconds on a thread: peak RSS
    between ``start()`` and ``stop()``, and the CPU time it used meanwhile."""

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        try:
            self.proc = psutil.Process(pid)
        except psutil.Error as exc:
            raise InvalidRequest(f"no process with pid {pid} to watch") from exc
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.peak_rss = 0
        self._cpu0 = 0.0
        self._t0 = 0.0

    def _tree(self) -> list[psutil.Process]:
        try:
            return [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return []

    def _rss(self) -> int:
        total = 0
        for proc in self._tree():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def _cpu(self) -> float:
        total = 0.0
        for proc in self._tree():
            try:
                times = proc.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                continue
        return total

    def start(self) -> None:
        self.peak_rss = self._rss()
        self._cpu0, self._t0 = self._cpu(), time.perf_counter()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="bench-watch", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, self._rss())

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.peak_rss = max(self.peak_rss, self._rss())
        cpu, wall = self._cpu() - self._cpu0, time.perf_counter() - self._t0
        return {"pid": self.proc.pid, "peak_rss_bytes": self.peak_rss, "cpu_time_s": cpu,
                "cpu_utilization": cpu / wall if wall > 0 else 0.0}


class SpawnedServer(ServeProcess):
    """`slm serve MODEL` on a free loopback port, stopped by ``close()``; in a session of its own
    so that Ctrl-C reaches the bench, not the server."""

    def __init__(self, model: str, *, parallel: int | None = None, threads: int | None = None,
                 ctx_size: int | None = None, timeout: float = 180.0) -> None:
        self.model = model
        args = ["--model", model]
        for flag, value in (("--parallel", parallel), ("--threads", threads), ("--ctx-size", ctx_size)):
            if value is not None:
                args += [flag, str(value)]
        super().__init__(args, timeout=timeout, new_session=True)
