"""A real Prometheus with the rendered scrape config and alert rules, scraping a real slmkit server:
every PromQL expression of the rendered Grafana dashboard and alert rules answers."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import yaml

from tests.helpers import ServerProcess, free_port

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
# A comparison at the end of an alert: the part before it must have series; the whole may be empty.
COMPARISON = re.compile(r"^(?P<lhs>.+?)\s*(?P<op>>|<|==|!=|>=|<=)\s*(?P<rhs>[0-9.e+-]+)$", re.S)


def expressions(tree: Path) -> list[tuple[str, str]]:
    """(where, expr) for every dashboard target and alert rule in the rendered compose tree."""
    found = []
    dashboard = json.loads((tree / "grafana/dashboards/slmkit.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']}", target["expr"]))
    rules = yaml.safe_load((tree / "prometheus/alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", " ".join(rule["expr"].split())))
    return found


@pytest.fixture(scope="module")
def prometheus(rendered: dict, tiny_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Prometheus on a free loopback port, scraping ``tiny_server`` every second with the rendered config."""
    tree = rendered[("llamacpp", "compose")]
    work = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((tree / "prometheus/prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]  # where compose mounts it
    config["rule_files"] = [str(tree / "prometheus/alerts.yml")]
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    [job] = config["scrape_configs"]
    assert job["job_name"] == "slmkit" and job["static_configs"][0]["targets"] == ["slmkit:8080"]
    job["static_configs"][0]["targets"] = [tiny_server.url.removeprefix("http://")]
    (work / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen([PROMETHEUS, f"--config.file={work / 'prometheus.yml'}",
                             f"--storage.tsdb.path={work / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=open(work / "prometheus.log", "wb"))  # noqa: SIM115
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError((work / "prometheus.log").read_text()[-2000:])
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def send_traffic(server: ServerProcess) -> None:
    """Chats (the same prompt twice: a prefix-cache hit), an unknown model, and a burst past the queue."""
    body = {"model": "smollm2-135m-instruct", "max_tokens": 4,
            "messages": [{"role": "user", "content": "Name one colour of the rainbow."}]}
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for _ in range(2):
            assert http.post("/v1/chat/completions", json=body).status_code == 200
        assert http.post("/v1/chat/completions", json={**body, "model": "no-such-model"}).status_code == 404
    burst = {**body, "max_tokens": 24}
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: httpx.post(f"{server.url}/v1/chat/completions", json=burst,
                                                   timeout=120).status_code, range(4)))
    assert 429 in codes and 200 in codes  # one slot, one queue place: the rest are refused (server_overloaded)


def query(url: str, expr: str) -> list:
    answer = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", (expr, answer)
    return answer["data"]["result"]


@pytest.mark.slow
def test_every_dashboard_and_alert_expression_answers(prometheus: str, tiny_server: ServerProcess,
                                                      rendered: dict) -> None:
    send_traffic(tiny_server)
    time.sleep(3)  # a few scrapes apart, so rate() sees the counters move
    send_traffic(tiny_server)
    pending = dict.fromkeys(expressions(rendered[("llamacpp", "compose")]))
    legitimately_empty = {}
    deadline = time.monotonic() + 90
    while pending and time.monotonic() < deadline:
        time.sleep(1)
        for where, expr in list(pending):
            match = COMPARISON.match(expr)
            series = query(prometheus, match.group("lhs") if match else expr)
            if series:
                pending.pop((where, expr))
                if match:  # the full alert expression is a valid query too; firing or not depends on load
                    legitimately_empty[where] = len(query(prometheus, expr))
    assert not pending, f"no series for: {list(pending)}"
    # On a healthy, lightly loaded server no alert condition holds: `up == 0`, p95 TTFT > 5 s, a queue of 48.
    assert legitimately_empty["alert SlmDown"] == 0
    assert legitimately_empty["alert SlmQueueSaturated"] == 0
    rules = httpx.get(f"{prometheus}/api/v1/rules", timeout=10).json()["data"]["groups"][0]["rules"]
    assert {r["name"] for r in rules} == {"SlmHighTimeToFirstToken", "SlmQueueSaturated", "SlmHighErrorRate",
                                          "SlmDown"}
    assert all(r["health"] == "ok" for r in rules), rules
    [up] = query(prometheus, 'up{job="slmkit"}')
    assert up["value"][1] == "1"
