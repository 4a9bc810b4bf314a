"""The shipped alert rules pass promtool; the dashboard only queries metrics we export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from slmkit.server.metrics import Metrics
from slmkit.server.monitoring import asset


def _exported_names() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names |= {sample.name for sample in family.samples} | {family.name}
    suffixes = ("_bucket", "_count", "_sum", "_total")
    names |= {n + s for n in list(names) for s in suffixes}
    return names | {"slm_requests_running", "slm_requests_waiting", "slm_kv_cache_usage_ratio",
                    "slm_models_loaded", "slm_model_memory_bytes", "slm_prefix_cache_hit_tokens_total"}


def _metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\bslm_[a-z0-9_]+", expr))


@pytest.mark.skipif(shutil.which("promtool") is None and not __import__("os").environ.get("CI"),
                    reason="promtool (Debian package prometheus) is installed by `make test` as root")
def test_alert_rules_pass_promtool() -> None:
    out = subprocess.run(["promtool", "check", "rules", str(asset("alerts.yml"))], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 rules found" in out.stdout


def test_rules_and_dashboard_use_exported_metrics() -> None:
    exported = _exported_names()
    rules = yaml.safe_load(asset("alerts.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == {"SlmHighTimeToFirstToken", "SlmQueueSaturated", "SlmHighErrorRate",
                                           "SlmDown"}
    exprs = [r["expr"] for r in rules]
    dashboard = json.loads(asset("grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    for expr in exprs:
        assert _metric_names(expr) <= exported, expr
