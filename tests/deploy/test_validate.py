"""Every rendered file passes the validators the issue names: kubernetes-validate --strict (1.29, 1.31),
kubectl kustomize, the Compose JSON schema, promtool, nginx -t."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from slmkit.deploy.check import check_compose, check_dir, check_kustomize, check_manifests, check_rules
from tests.conftest import SPECS

pytestmark = pytest.mark.usefixtures("rendered")

K8S = [("llamacpp", "k8s"), ("vllm", "k8s")]


def statuses(results: list) -> dict[str, list]:
    out: dict[str, list] = {"ok": [], "failed": [], "skipped": []}
    for r in results:
        out[r.status].append(r)
    return out


@pytest.mark.parametrize("key", K8S, ids=lambda k: k[0])
def test_manifests_pass_strict_schema_for_1_29_and_1_31(rendered: dict, key: tuple[str, str]) -> None:
    by = statuses(list(check_manifests(rendered[key])))
    assert not by["failed"], by["failed"]
    checked = {(r.check, r.path.split()[-1]) for r in by["ok"]}
    for kind in ("Namespace/slmkit", "Deployment/slmkit", "Service/slmkit", "HorizontalPodAutoscaler/slmkit",
                 "PodDisruptionBudget/slmkit", "NetworkPolicy/slmkit", "ConfigMap/slmkit-settings",
                 "ConfigMap/slmkit-adapter-rules"):
        for version in ("1.29.0", "1.31.0"):
            assert (f"kubernetes-validate {version}", kind) in checked
    # The Prometheus-operator CRDs have no offline schema: skipped by name, and said so.
    assert sorted(r.path.split()[-1] for r in by["skipped"]) == ["PrometheusRule/slmkit", "ServiceMonitor/slmkit"]


def test_strict_validation_catches_an_unknown_field(rendered: dict, tmp_path: Path) -> None:
    tree = tmp_path / "k8s"
    shutil.copytree(rendered[("llamacpp", "k8s")], tree)
    path = tree / "base" / "service.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["sessionAfinity"] = "ClientIP"  # misspelt
    path.write_text(yaml.safe_dump(doc))
    failed = [r for r in check_manifests(tree) if r.status == "failed"]
    assert failed and all("Service/slmkit" in r.path for r in failed)


@pytest.mark.parametrize("key", K8S, ids=lambda k: k[0])
def test_kustomize_renders_both_overlays(rendered: dict, key: tuple[str, str]) -> None:
    results = list(check_kustomize(rendered[key]))
    assert [(r.path, r.status) for r in results] == [("overlays/dev", "ok"), ("overlays/prod", "ok")]
    for overlay, replicas in (("dev", 1), ("prod", max(3 if key[0] == "llamacpp" else 2, 2))):
        text = subprocess.run(["kubectl", "kustomize", str(rendered[key] / "overlays" / overlay)],
                              capture_output=True, text=True, check=True).stdout
        docs = {f"{d['kind']}/{d['metadata']['name']}": d for d in yaml.safe_load_all(text)}
        assert docs["Deployment/slmkit"]["spec"]["replicas"] == replicas
        assert docs["HorizontalPodAutoscaler/slmkit"]["spec"]["minReplicas"] == replicas
        assert all(d["metadata"].get("namespace", "slmkit") == "slmkit" for d in docs.values())
        dashboards = [d for d in docs.values() if d["metadata"]["name"].startswith("slmkit-grafana-dashboard")]
        assert dashboards and dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"


@pytest.mark.parametrize("engine", ["llamacpp", "vllm"])
def test_compose_matches_the_compose_spec(rendered: dict, engine: str) -> None:
    results = list(check_compose(rendered[(engine, "compose")], SPECS / "compose-spec.json"))
    assert [(r.status, r.detail) for r in results] == [("ok", "")]


def test_compose_schema_rejects_a_broken_file(rendered: dict, tmp_path: Path) -> None:
    tree = tmp_path / "compose"
    shutil.copytree(rendered[("llamacpp", "compose")], tree)
    doc = yaml.safe_load((tree / "compose.yaml").read_text())
    doc["services"]["slmkit"]["restart_policy"] = "always"
    (tree / "compose.yaml").write_text(yaml.safe_dump(doc))
    assert [r.status for r in check_compose(tree, SPECS / "compose-spec.json")] == ["failed"]


@pytest.mark.parametrize("key", [("llamacpp", "compose"), ("llamacpp", "k8s"), ("vllm", "k8s")])
def test_alert_rules_pass_promtool(rendered: dict, key: tuple[str, str]) -> None:
    results = list(check_rules(rendered[key]))
    assert results and all(r.status == "ok" for r in results), results


@pytest.mark.parametrize("key", [("llamacpp", t) for t in ("docker", "compose", "k8s", "nginx")]
                         + [("vllm", t) for t in ("docker", "compose", "k8s")], ids=lambda k: "-".join(k))
def test_deploy_check_passes_on_every_rendered_tree(rendered: dict, key: tuple[str, str]) -> None:
    by = statuses(check_dir(rendered[key], SPECS / "compose-spec.json"))
    assert by["ok"] and not by["failed"], by["failed"]
    assert all("Prometheus-operator CRD" in r.detail for r in by["skipped"])
