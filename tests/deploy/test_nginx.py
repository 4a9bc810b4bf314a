"""Three slmkit replicas on loopback behind a real nginx running the upstream config `slm deploy nginx`
renders: one replica is killed mid-load; no request admitted after the kill fails, the survivors serve them."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from slmkit.deploy import DeployOptions, plan, render, write_tree
from slmkit.deploy.check import nginx_main_config
from tests.helpers import ServerProcess, free_port

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LOG_FORMAT = "$msec $request_time $status \"$upstream_addr\""


@dataclass
class Balancer:
    url: str
    replicas: list[ServerProcess]
    work: Path


@pytest.fixture(scope="module")
def balancer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Balancer]:
    work = tmp_path_factory.mktemp("nginx")
    replicas: list[ServerProcess] = []
    proc = None
    try:
        for _ in range(3):
            replicas.append(ServerProcess("--parallel", "1", "--ctx-size", "512", "--threads", "1"))
        listen = f"127.0.0.1:{free_port()}"
        files = render("nginx", plan(DeployOptions(model="smollm2-135m-instruct", replicas=3)),
                       upstreams=[r.url.removeprefix("http://") for r in replicas], listen=listen)
        write_tree(files, work / "rendered")
        main = nginx_main_config(work, work / "rendered" / "slmkit.conf", LOG_FORMAT)
        proc = subprocess.Popen([NGINX, "-p", str(work), "-c", str(main), "-e", str(work / "error.log")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://{listen}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.1)
        yield Balancer(url, replicas, work)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGQUIT)
            proc.wait(timeout=30)
        for replica in replicas:
            replica.close()


def test_streams_pass_through_unbuffered(balancer: Balancer) -> None:
    client = openai.OpenAI(base_url=f"{balancer.url}/v1", api_key="unused", max_retries=0, timeout=120)
    chunks = list(client.chat.completions.create(model="smollm2-135m-instruct", max_tokens=6, stream=True,
                                                 messages=[{"role": "user", "content": "Say hello."}]))
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 2
    with httpx.stream("POST", f"{balancer.url}/v1/completions", timeout=120,
                      json={"model": "smollm2-135m-instruct", "prompt": "Hi", "max_tokens": 4, "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]" and len(events) >= 3


@dataclass
class Outcome:
    started: float
    status: int


@pytest.mark.slow
def test_killing_a_replica_mid_load_fails_no_later_request(balancer: Balancer) -> None:
    body = {"model": "smollm2-135m-instruct", "max_tokens": 6,
            "messages": [{"role": "user", "content": "Count to three."}]}
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    total, killed_after = 30, 6
    kill_time: list[float] = []
    issued = [0]

    def worker() -> None:
        with httpx.Client(base_url=balancer.url, timeout=120) as http:
            while True:
                with lock:
                    if issued[0] >= total:
                        return
                    issued[0] += 1
                started = time.time()
                try:
                    status = http.post("/v1/chat/completions", json=body).status_code
                except httpx.HTTPError:
                    status = -1
                with lock:
                    outcomes.append(Outcome(started, status))
                    if len(outcomes) == killed_after and not kill_time:
                        balancer.replicas[0].proc.send_signal(signal.SIGKILL)
                        balancer.replicas[0].proc.wait(timeout=10)
                        kill_time.append(time.time())  # the replica is gone: its sockets are closed

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert kill_time and balancer.replicas[0].proc.wait(timeout=10) == -signal.SIGKILL
    after = [o for o in outcomes if o.started > kill_time[0]]
    assert len(after) >= 10
    assert [o.status for o in after] == [200] * len(after)

    # nginx's own log: every request that started after the kill was answered by a survivor.
    killed = balancer.replicas[0].url.removeprefix("http://")
    survivors = {r.url.removeprefix("http://") for r in balancer.replicas[1:]}
    served_by: dict[str, int] = {}
    for line in (balancer.work / "access.log").read_text().splitlines():
        end, duration, status, upstreams = line.split(" ", 3)
        if float(end) - float(duration) <= kill_time[0] + 0.01:
            continue
        final = upstreams.strip('"').split(", ")[-1]
        assert status == "200" and final in survivors, line
        served_by[final] = served_by.get(final, 0) + 1
    assert set(served_by) == survivors, served_by  # both survivors took a share (least_conn)
    assert killed not in served_by
