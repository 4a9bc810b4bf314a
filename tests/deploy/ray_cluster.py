"""A local Ray cluster for the tests: a head and one worker node, on 127.0.0.1 only.

Both nodes are `ray start --block` processes on this machine (a network namespace for the worker
would need a routable address for the head's GCS, which loopback-only cannot give), each in a
session of its own, with a private temp dir and free ports. Teardown never runs `ray stop` (it
stops every Ray process of the machine, other users' clusters included): it ends the two
sessions' process groups, then any process whose command line names this cluster's temp dir.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.helpers import free_port

# `ray start` turns "127.0.0.1" into the machine's outward address; other loopback addresses stay
# as given, so the head is 127.0.0.2 and the worker 127.0.0.3 (all of 127/8 is loopback on Linux).
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"
RAY = str(Path(sys.executable).with_name("ray"))
SERVE = str(Path(sys.executable).with_name("serve"))


class LocalRayCluster:
    """`with LocalRayCluster(env) as cluster:` ... `cluster.address`, `cluster.serve_run(config)`."""

    def __init__(self, env: dict[str, str], cpus_per_node: int = 2) -> None:
        # Short: Ray puts Unix sockets under it (107-byte limit).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="r20-", dir="/tmp"))
        self.env = {**os.environ, **env, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_UV_RUN_RUNTIME_ENV": "0"}
        self.cpus = cpus_per_node
        self.port = free_port()
        self.address = f"{HEAD_IP}:{self.port}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []

    def _start(self, name: str, *args: str) -> None:
        log = self.temp_dir / f"{name}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.procs.append(subprocess.Popen(
                [RAY, "start", "--block", "--num-cpus", str(self.cpus),
                 "--disable-usage-stats", "--dashboard-agent-listen-port", str(free_port()),
                 "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
                 *args], env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))

    def start(self, timeout: float = 90) -> None:
        self._start("head", "--head", "--port", str(self.port), "--temp-dir", str(self.temp_dir),
                    "--include-dashboard", "false", "--dashboard-port", str(free_port()),
                    "--ray-client-server-port", str(free_port()), "--node-ip-address", HEAD_IP)
        self._wait_nodes(1, timeout)
        self._start("worker", "--address", self.address, "--node-ip-address", WORKER_IP)
        self._wait_nodes(2, timeout)

    def _wait_nodes(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, log in zip(self.procs, self.logs, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"ray start exited: {log.read_text(errors='replace')[-2000:]}")
            if self.alive_nodes() >= n:
                return
            time.sleep(1)
        raise TimeoutError(f"{n} Ray node(s) not up within {timeout:.0f}s")

    def alive_nodes(self) -> int:
        """Raylets of this cluster, counted by their process (cheaper than a driver)."""
        return sum(1 for cmd in _cmdlines() if "raylet" in cmd.split(" ", 1)[0] and str(self.temp_dir) in cmd)

    def serve_run(self, config: Path) -> None:
        """`serve run CONFIG --non-blocking`: submit the application and return."""
        done = subprocess.run([SERVE, "run", str(config), "--address", self.address, "--non-blocking"],
                              env=self.env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for pid in self.stray_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if not os.environ.get("SLM_TEST_KEEP_RAY_LOGS"):
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def stray_pids(self) -> list[int]:
        """Processes still naming this cluster's temp dir (workers that left the process group)."""
        return [pid for pid, cmd in _processes() if str(self.temp_dir) in cmd and pid != os.getpid()]

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _processes() -> list[tuple[int, str]]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                out.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
    return out


def _cmdlines() -> list[str]:
    return [cmd for _, cmd in _processes()]


def wait_http(url: str, timeout: float, ok: int = 200) -> float:
    """Poll ``url`` until it answers ``ok``; returns the seconds it took."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=5).status_code == ok:
                return time.monotonic() - start
        time.sleep(1)
    raise TimeoutError(f"{url} did not answer {ok} within {timeout:.0f}s")
