"""The security settings, asserted on the rendered objects (parsed), not on template text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from slmkit.deploy import DeployOptions, plan, render
from slmkit.deploy.spec import UID


def objects(tree: Path) -> dict[str, Any]:
    docs = {}
    for path in sorted(tree.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and "kind" in doc and doc["kind"] != "Kustomization":
                docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


def assert_restricted_container(container: dict[str, Any]) -> None:
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID != 0
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("engine", ["llamacpp", "vllm"])
def test_deployment_pod_is_restricted(rendered: dict, engine: str) -> None:
    pod = objects(rendered[(engine, "k8s")])["Deployment/slmkit"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"] + pod.get("initContainers", []):
        assert_restricted_container(container)
        writable = {m["mountPath"] for m in container["volumeMounts"]}
        assert writable <= {"/models", "/tmp", "/dev/shm"}
    assert objects(rendered[(engine, "k8s")])["Namespace/slmkit"]["metadata"]["labels"][
        "pod-security.kubernetes.io/enforce"] == "restricted"


def test_probes_and_grace_period_beyond_the_drain(rendered: dict) -> None:
    docs = objects(rendered[("llamacpp", "k8s")])
    pod = docs["Deployment/slmkit"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    drain = int(docs["ConfigMap/slmkit-settings"]["data"]["SLM_SERVER__DRAIN_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > drain
    # Readiness flips to 503 during the drain, so the Service stops sending before the process exits.
    assert container["readinessProbe"]["periodSeconds"] * container["readinessProbe"]["failureThreshold"] < drain


def test_resources_follow_the_memory_estimate(rendered: dict) -> None:
    the_plan = plan(DeployOptions(model="smollm2-135m-instruct", replicas=3))
    resources = objects(rendered[("llamacpp", "k8s")])["Deployment/slmkit"]["spec"]["template"]["spec"][
        "containers"][0]["resources"]
    request_mib = int(resources["requests"]["memory"].removesuffix("Mi"))
    limit_mib = int(resources["limits"]["memory"].removesuffix("Mi"))
    assert request_mib * 2**20 >= the_plan.memory_estimate and limit_mib > request_mib
    bigger = plan(DeployOptions(model="smollm2-135m-instruct", ctx=8192, slots=8))
    assert bigger.memory_request > the_plan.memory_request


def test_vllm_deployment_uses_gpus_flags_and_the_secret(rendered: dict) -> None:
    docs = objects(rendered[("vllm", "k8s")])
    container = docs["Deployment/slmkit"]["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[0] == "Qwen/Qwen3-1.7B"
    assert args[args.index("--served-model-name") + 1] == "qwen3-1.7b"
    for flag in ("--max-model-len", "--max-num-seqs", "--gpu-memory-utilization", "--enable-prefix-caching"):
        assert flag in args
    assert args[args.index("--tool-call-parser") + 1] == "hermes"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == container["resources"]["requests"]["nvidia.com/gpu"]
    assert args[-2:] == ["--api-key", "$(VLLM_API_KEY)"]  # expanded by the kubelet from the secret below
    assert container["env"][0]["name"] == "VLLM_API_KEY"
    assert container["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "slm-keys"
    hpa = docs["HorizontalPodAutoscaler/slmkit"]["spec"]["metrics"]
    assert [m["pods"]["metric"]["name"] for m in hpa if m["type"] == "Pods"] == ["vllm_num_requests_waiting"]
    assert "vllm:num_requests_waiting" in docs["ConfigMap/slmkit-adapter-rules"]["data"]["config.yaml"]
    assert docs["Service/slmkit"]["metadata"]["name"] == objects(rendered[("llamacpp", "k8s")])["Service/slmkit"][
        "metadata"]["name"]


def test_tool_flags_only_with_a_parser() -> None:
    files = render("k8s", plan(DeployOptions(model="gemma-3-1b", engine="vllm")))
    args = yaml.safe_load(files["base/deployment.yaml"])["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--enable-auto-tool-choice" not in args and "--tool-call-parser" not in args


def test_hpa_scales_on_cpu_and_requests_waiting(rendered: dict) -> None:
    docs = objects(rendered[("llamacpp", "k8s")])
    metrics = docs["HorizontalPodAutoscaler/slmkit"]["spec"]["metrics"]
    assert {m["type"] for m in metrics} == {"Resource", "Pods"}
    assert [m["pods"]["metric"]["name"] for m in metrics if m["type"] == "Pods"] == ["slm_requests_waiting"]
    adapter = yaml.safe_load(docs["ConfigMap/slmkit-adapter-rules"]["data"]["config.yaml"])["rules"][0]
    assert adapter["name"]["as"] == "slm_requests_waiting"
    assert adapter["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert docs["PodDisruptionBudget/slmkit"]["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("engine", ["llamacpp", "vllm"])
def test_network_policy_allows_clients_monitoring_and_dns(rendered: dict, engine: str) -> None:
    spec = objects(rendered[(engine, "k8s")])["NetworkPolicy/slmkit"]["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    [rule] = spec["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"slmkit-client": "true"}}},
                            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert rule["ports"] == [{"port": 8080, "protocol": "TCP"}]
    dns = spec["egress"][0]
    assert {p["port"] for p in dns["ports"]} == {53}
    hub = spec["egress"][1:]
    if engine == "llamacpp":  # the embedded model is pulled from the image's package: no Hub egress
        assert hub == []
    else:  # vLLM downloads its weights from the Hub: HTTPS only, never the cluster's private ranges
        assert hub[0]["ports"] == [{"port": 443, "protocol": "TCP"}]
        assert "10.0.0.0/8" in hub[0]["to"][0]["ipBlock"]["except"]


def test_catalog_model_pull_gets_hub_egress_and_baked_gets_none() -> None:
    pulled = yaml.safe_load(render("k8s", plan(DeployOptions(model="qwen3-0.6b")))["base/networkpolicy.yaml"])
    assert pulled["spec"]["egress"][1]["ports"] == [{"port": 443, "protocol": "TCP"}]
    baked = render("k8s", plan(DeployOptions(model="qwen3-0.6b", bake=True)))
    assert len(yaml.safe_load(baked["base/networkpolicy.yaml"])["spec"]["egress"]) == 1
    assert "initContainers" not in yaml.safe_load(baked["base/deployment.yaml"])["spec"]["template"]["spec"]
    assert "slm pull qwen3-0.6b:q4_k_m" in baked["image/Dockerfile"]


@pytest.mark.parametrize("engine", ["llamacpp", "vllm"])
def test_dockerfile_never_runs_as_root(rendered: dict, engine: str) -> None:
    text = (rendered[(engine, "docker")] / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users == [f"{UID}:{UID}"]
    last_from = max(i for i, line in enumerate(lines) if line.startswith("FROM "))
    assert lines.index(f"USER {UID}:{UID}") > last_from
    assert any(line.startswith("HEALTHCHECK") for line in lines) and "/health" in text
    assert 'VOLUME ["/models", "/tmp"]' in lines


def test_dockerfile_runtime_stage_has_no_compiler(rendered: dict) -> None:
    text = (rendered[("llamacpp", "docker")] / "Dockerfile").read_text()
    builder, runtime = text.split("\nFROM python:3.12-slim\n")
    assert "build-essential" in builder and "AS builder" in builder
    assert "build-essential" not in runtime and "cmake" not in runtime and "apt-get" not in runtime
    assert (rendered[("llamacpp", "docker")] / ".dockerignore").read_text().splitlines()[-2:] == ["*", "!Dockerfile"]


@pytest.mark.parametrize("engine", ["llamacpp", "vllm"])
def test_compose_services_are_locked_down(rendered: dict, engine: str) -> None:
    doc = yaml.safe_load((rendered[(engine, "compose")] / "compose.yaml").read_text())
    services = doc["services"]
    for name in ("slmkit", "prometheus", "grafana"):
        svc = services[name]
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        assert not svc["user"].startswith("0") and "no-new-privileges:true" in svc["security_opt"]
        assert all(p.startswith("127.0.0.1:") for p in svc["ports"])
        assert svc["restart"] == "unless-stopped"
    slm = services["slmkit"]
    assert slm["secrets"] == ["slm-keys"] and doc["secrets"]["slm-keys"] == {"environment": "SLM_API_KEY"}
    assert int(slm["stop_grace_period"].removesuffix("s")) > 30
    limits = slm["deploy"]["resources"]
    assert int(limits["limits"]["memory"].removesuffix("M")) > int(limits["reservations"]["memory"].removesuffix("M"))
    webui = services["open-webui"]["environment"]
    if engine == "llamacpp":
        assert webui["OLLAMA_BASE_URL"] == "http://slmkit:8080"
    else:
        assert limits["reservations"]["devices"][0]["capabilities"] == ["gpu"]
        assert webui["OPENAI_API_BASE_URL"] == "http://slmkit:8080/v1"


def test_compose_ships_the_operations_assets_unchanged(rendered: dict) -> None:
    from slmkit.server.monitoring import asset

    tree = rendered[("llamacpp", "compose")]
    assert (tree / "prometheus/alerts.yml").read_text() == asset("alerts.yml").read_text()
    assert (tree / "grafana/dashboards/slmkit.json").read_text() == asset("grafana-dashboard.json").read_text()
    prom = yaml.safe_load((tree / "prometheus/prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == ["slmkit:8080"]
    source = yaml.safe_load((tree / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
