"""`slm deploy ray` on a live local Ray cluster (a head and a worker node on loopback addresses).

The rendered Serve config is deployed with `serve run --non-blocking`, edited only for one host:
the proxy on the head only (two proxies would share 127.0.0.1:PORT), a free port, 1 CPU and 1
thread per replica, and short autoscaling delays. Figures are printed (`-s`) for docs/deploy.md.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.ray_cluster import LocalRayCluster, free_port, wait_http

pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'slmkit[ray]'")
pytestmark = pytest.mark.slow

MODEL = "smollm2-135m-instruct"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
HEARTBEAT_S = 1.0


def local_config(out: Path, port: int, *, autoscale: bool, replicas: int | None = None) -> Path:
    config = yaml.safe_load((out / "serve-config.yaml").read_text())
    config["proxy_location"] = "HeadOnly"
    config["http_options"].update(host="127.0.0.1", port=port)
    app = config["applications"][0]
    app["args"]["settings"]["engine__threads"] = 1
    deployment = app["deployments"][0]
    deployment["ray_actor_options"]["num_cpus"] = 1
    if replicas is not None:
        deployment["num_replicas"] = replicas
    if autoscale:
        deployment["autoscaling_config"].update(upscale_delay_s=1, downscale_delay_s=4, look_back_period_s=2)
    path = out / f"local-{'autoscale' if autoscale else replicas}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def render(out: Path, *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "slmkit", "deploy", "ray", "-m", MODEL, "--slots", "2",
                           "--ctx", "512", "--out", str(out), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


class Ingress:
    def __init__(self, cluster: LocalRayCluster, port: int, root: Path) -> None:
        self.cluster = cluster
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.root = root
        self.figures: dict[str, object] = {}

    def replicas(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = httpx.get(f"{self.url}/ray/replicas", timeout=10).json()
        return entries

    def wait_replicas(self, n: int, timeout: float, exclude: frozenset[str] = frozenset()) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            ids = {e["labels"]["replica"] for e in self.replicas()}
            if len(ids) == n and not ids & exclude:
                return time.monotonic() - start
            time.sleep(0.5)
        raise TimeoutError(f"not {n} replicas within {timeout:.0f}s: {self.replicas()}")

    def chat(self, max_tokens: int = 8, stream: bool = False, timeout: float = 120) -> httpx.Response:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Count from one to twenty."}],
                "max_tokens": max_tokens, "temperature": 0, "stream": stream}
        return httpx.post(f"{self.url}/v1/chat/completions", json=body, timeout=timeout)


def finished_per_replica(ingress: Ingress) -> dict[str, float]:
    """slm_requests_total of each replica, scraped from its own metrics endpoint."""
    counts = {}
    for entry in ingress.replicas():
        text = httpx.get(f"http://{entry['targets'][0]}/metrics", timeout=10).text
        counts[entry["labels"]["replica"]] = sum(
            s.value for family in text_string_to_metric_families(text) if family.name == "slm_requests"
            for s in family.samples if s.name == "slm_requests_total")
    return counts


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ingress]:
    root = tmp_path_factory.mktemp("ray")
    render(root / "fixed", "--replicas", "2")
    render(root / "autoscale", "--min-replicas", "1", "--max-replicas", "2", "--target-ongoing-requests", "1")
    port = free_port()
    start = time.monotonic()
    # As the rendered RayService sets it: the proxy balances on queue length, not to its own node first.
    env = {"SLMKIT_RAY_HEARTBEAT_S": str(HEARTBEAT_S), "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0"}
    with LocalRayCluster(env) as cluster:
        ingress = Ingress(cluster, port, root)
        ingress.figures["cluster_start_s"] = time.monotonic() - start
        submitted = time.monotonic()
        cluster.serve_run(local_config(root / "fixed", port, autoscale=False))
        wait_http(f"{ingress.url}/ready", 150)
        ingress.wait_replicas(2, 120)
        ingress.figures["deploy_to_two_replicas_s"] = time.monotonic() - submitted
        yield ingress
        figures = {k: round(v, 1) if isinstance(v, float) else v for k, v in ingress.figures.items()}
        print(f"\nray figures: {json.dumps(figures)}")


def test_both_apis_answer_through_the_ingress(ingress: Ingress) -> None:
    chat = ingress.chat(max_tokens=8)
    assert chat.status_code == 200, chat.text
    body = chat.json()
    assert body["model"] == MODEL and body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] <= 8
    with httpx.stream("POST", f"{ingress.url}/api/chat", timeout=60, json={
            "model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "options": {"num_predict": 8}}) as r:
        assert r.status_code == 200
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert lines[-1]["done"] is True and "".join(x["message"]["content"] for x in lines)
    tags = httpx.get(f"{ingress.url}/api/tags", timeout=10).json()
    assert MODEL in {m["name"].split(":")[0] for m in tags["models"]}
    bad = httpx.post(f"{ingress.url}/v1/chat/completions", json={"model": MODEL}, timeout=10)
    assert bad.status_code in (400, 422) and "error" in bad.json()


def test_requests_spread_over_two_replicas(ingress: Ingress) -> None:
    before = finished_per_replica(ingress)
    n = 16
    with cf.ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: ingress.chat(max_tokens=4).status_code, range(n)))
    assert statuses == [200] * n
    after = finished_per_replica(ingress)
    served = {replica: after[replica] - before.get(replica, 0) for replica in after}
    assert len(served) == 2 and sum(served.values()) == n, served
    assert min(served.values()) >= 1, served
    ingress.figures.update({f"requests_on_{r}": v for r, v in served.items()})


def test_prometheus_scrapes_every_replica(ingress: Ingress, tmp_path: Path) -> None:
    """The rendered Prometheus config finds both replicas through /ray/replicas; the dashboard's sums work."""
    out = ingress.root / "fixed"
    config = yaml.safe_load((out / "prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(out / "prometheus/alerts.yml")]
    [job] = config["scrape_configs"]
    job["http_sd_configs"][0].update(url=f"{ingress.url}/ray/replicas", refresh_interval="1s")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/-/ready", 60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            up = query(url, 'up{job="slmkit"} == 1')
            finished = query(url, "sum by (replica) (slm_requests_total)")
            if len(up) == 2 and len(finished) == 2:
                break
            time.sleep(1)
        assert {s["metric"]["replica"] for s in up} == {e["labels"]["replica"] for e in ingress.replicas()}
        assert sum(float(s["value"][1]) for s in finished) > 0
        assert query(url, "sum by (model) (slm_requests_running)")  # a dashboard panel's expression
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


def stream_outcome(ingress: Ingress) -> str:
    """'ok' (the stream ended with [DONE]), or how it failed; never a hang (bounded timeout)."""
    try:
        with httpx.stream("POST", f"{ingress.url}/v1/chat/completions", timeout=90, json={
                "model": MODEL, "stream": True, "max_tokens": 48, "temperature": 0,
                "messages": [{"role": "user", "content": "Write a long story about a lighthouse."}]}) as r:
            if r.status_code != 200:
                return f"status {r.status_code}"
            lines = [line for line in r.iter_lines() if line]
    except httpx.TimeoutException:
        return "timeout"
    except httpx.HTTPError as exc:
        return f"broken: {type(exc).__name__}"
    return "ok" if lines and lines[-1] == "data: [DONE]" else "truncated"


def test_killed_replica_is_replaced(ingress: Ingress) -> None:
    victim = ingress.replicas()[0]["labels"]
    with cf.ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(stream_outcome, ingress) for _ in range(6)]
        time.sleep(2)  # admitted and streaming on both replicas
        killed = time.monotonic()
        os.kill(int(victim["pid"]), signal.SIGKILL)
        outcomes = [f.result(timeout=120) for f in futures]
    # A stream cut by the dying replica fails loudly (the proxy aborts the chunked body, or a 5xx
    # before it started); none hangs, and none ends as if it were complete.
    assert all(o == "ok" or o.startswith(("status 5", "broken")) for o in outcomes), outcomes
    assert "ok" in outcomes, outcomes  # the surviving replica's requests finish
    ingress.wait_replicas(2, 120, exclude=frozenset({victim["replica"]}))
    ingress.figures["replaced_after_kill_s"] = time.monotonic() - killed
    ingress.figures["kill_outcomes"] = outcomes
    assert ingress.chat(max_tokens=4).status_code == 200


def test_scale_down_drains_running_requests(ingress: Ingress) -> None:
    """Redeployed with 1 replica while streams run on both: the stopped one finishes its streams first."""
    with cf.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(stream_outcome, ingress) for _ in range(4)]
        time.sleep(2)
        ingress.cluster.serve_run(local_config(ingress.root / "fixed", ingress.port, autoscale=False, replicas=1))
        outcomes = [f.result(timeout=120) for f in futures]
    assert outcomes == ["ok"] * 4, outcomes
    ingress.figures["down_to_one_s"] = ingress.wait_replicas(1, 90)


def test_autoscaling_goes_1_2_1(ingress: Ingress) -> None:
    ingress.cluster.serve_run(local_config(ingress.root / "autoscale", ingress.port, autoscale=True))
    ingress.wait_replicas(1, 60)  # min_replicas 1, no load: one replica
    burst_start = time.monotonic()
    statuses: list[int] = []
    with cf.ThreadPoolExecutor(6) as pool:
        stop = False

        def load() -> None:
            while not stop:
                statuses.append(ingress.chat(max_tokens=32, timeout=120).status_code)

        futures = [pool.submit(load) for _ in range(6)]
        try:
            ingress.figures["scale_up_s"] = ingress.wait_replicas(2, 90)
        finally:
            stop = True
            for f in futures:
                f.result(timeout=150)
    ingress.figures["burst_s"] = time.monotonic() - burst_start
    ingress.figures["burst_requests"] = len(statuses)
    assert statuses and set(statuses) == {200}, statuses  # scaling up loses no request
    ingress.figures["scale_down_s"] = ingress.wait_replicas(1, 90)
    assert ingress.chat(max_tokens=4).status_code == 200
