"""`slm deploy ray`: a Ray Serve application (module + Serve config) and the same on KubeRay (RayService).

Pure: a Plan -> {relative path: text}. The replica code itself lives in ``slmkit.deploy.ray_app``
(installed on every node with ``slmkit[ray]``), so the Serve config names it by import path and
``serve deploy`` needs no working directory upload.
"""

from __future__ import annotations

import pprint
from typing import Any

import yaml

from slmkit import __version__
from slmkit.catalog.estimate import MIB
from slmkit.deploy.render import CONTAINER_SECURITY, Files, _context, _env
from slmkit.deploy.spec import UID, Plan, mib
from slmkit.errors import InvalidRequest
from slmkit.server.monitoring import asset

RAY_VERSION = "2.60.0"  # the version the live-cluster test runs (tests/deploy/test_ray_cluster.py)
IMPORT_PATH = "slmkit.deploy.ray_app:build"
DISCOVERY_PATH = "slmkit.deploy.ray_app:discovery"
KUBERAY_SERVE_PORT = 8000  # the port KubeRay's <name>-serve-svc forwards to
RAY_OVERHEAD = 1024 * MIB  # raylet, proxy and worker baseline in each worker pod
# Every Ray node's environment. Ray's proxy otherwise sends each request to a replica on its own
# node until that one is full; an LLM request is seconds of compute, so balance on queue length.
RAY_ENV = {"HOME": "/tmp", "HF_HOME": "/tmp/hf", "SLM_HOME": "/models",
           "RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING": "0"}


def replica_cpus(plan: Plan) -> int:
    return int(plan.cpu_request)


def replica_bounds(plan: Plan) -> tuple[int, int] | None:
    """(min, max) when Serve autoscales (--min-replicas or --max-replicas given), else None."""
    o = plan.options
    if o.min_replicas is None and o.max_replicas is None:
        return None
    low = o.min_replicas if o.min_replicas is not None else o.replicas
    return low, o.max_replicas or max(4 * low, 2)


def serve_config(plan: Plan, *, port: int, host: str = "0.0.0.0") -> dict[str, Any]:
    """The Serve config (`serve deploy` / `serve run` / RayService serveConfigV2)."""
    o = plan.options
    cpus = replica_cpus(plan)
    deployment: dict[str, Any] = {"name": "slmkit"}
    bounds = replica_bounds(plan)
    if bounds is None:
        deployment["num_replicas"] = o.replicas
    else:
        deployment["autoscaling_config"] = {
            "min_replicas": bounds[0], "max_replicas": bounds[1],
            "target_ongoing_requests": o.target_ongoing_requests or o.slots,
            "upscale_delay_s": 30, "downscale_delay_s": 300, "look_back_period_s": 30,
        }
    deployment.update({
        # Requests a replica holds at once: its slots plus as many waiting in its engine queue;
        # beyond that Serve's proxy queues them and routes to the least loaded replica.
        "max_ongoing_requests": 2 * o.slots,
        "health_check_period_s": 10, "health_check_timeout_s": 30,
        # Drain: a stopping replica gets no new requests and its running ones this long to finish.
        "graceful_shutdown_wait_loop_s": 2, "graceful_shutdown_timeout_s": o.drain_timeout,
        "ray_actor_options": {"num_cpus": cpus, "memory": plan.memory_request},
    })
    settings = {"engine__parallel": o.slots, "engine__ctx_size": o.ctx, "engine__threads": cpus,
                "server__drain_timeout": o.drain_timeout, "security__metrics_public": True,
                **{f"engine__cache_type_{kv}": t
                   for kv, t in (("k", o.cache_type_k), ("v", o.cache_type_v)) if t != "f16"}}
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": host, "port": port, "request_timeout_s": 600},
        "applications": [{
            "name": "slmkit", "route_prefix": "/", "import_path": IMPORT_PATH,
            "args": {"model": plan.pull_spec, "pull": None if plan.pull_spec == plan.served_name else plan.pull_spec,
                     "settings": settings, "metrics_port": 0},
            "deployments": [deployment],
        }, {
            # GET /ray/replicas: every replica's metrics endpoint, for Prometheus (docs/deploy.md).
            "name": "slmkit-replicas", "route_prefix": "/ray", "import_path": DISCOVERY_PATH,
        }],
    }


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    """Block scalars for multi-line text (serveConfigV2 stays readable), no anchors for shared dicts."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def _dump(value: Any) -> str:
    return str(yaml.dump(value, Dumper=_Dumper, sort_keys=False, width=120))


def _header(plan: Plan, what: str) -> str:
    o = plan.options
    return (f"# Rendered by `slm deploy ray --model {o.model}` (slmkit {__version__}, Ray {RAY_VERSION}): {what}.\n"
            f"# Per replica: {plan.served_name} {plan.quant}, ctx {o.ctx} x {o.slots} slots, "
            f"{replica_cpus(plan)} CPU, {mib(plan.memory_request)} memory (slm models estimate + 15%).\n")


def _container(plan: Plan, name: str, ports: list[tuple[str, int]], cpu: str, request: int, limit: int
               ) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in RAY_ENV.items()]
    if plan.options.api_keys_secret:
        env.append({"name": "SLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": plan.options.api_keys_secret,
                                                                             "key": "api-key"}}})
    return {
        "name": name, "image": plan.options.image or "slmkit-ray:local", "env": env,
        "ports": [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports],
        "resources": {"requests": {"cpu": cpu, "memory": mib(request)},
                      "limits": {"cpu": cpu, "memory": mib(limit)}},
        "securityContext": CONTAINER_SECURITY,
        # Ray Serve stops routing to a pod's replicas first; keep the pod up until they drained.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(plan.options.drain_timeout)]}}},
        "volumeMounts": [{"name": "models", "mountPath": "/models"}, {"name": "tmp", "mountPath": "/tmp"},
                         {"name": "shm", "mountPath": "/dev/shm"}],
    }


def _pod(plan: Plan, container: dict[str, Any]) -> dict[str, Any]:
    size = mib(int(max(plan.disk_bytes, 64 * MIB) * 1.3))
    return {
        "metadata": {"labels": {"app.kubernetes.io/name": "slmkit", "app.kubernetes.io/component": "ray"}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": plan.grace_seconds,
            "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [{"name": "models", "emptyDir": {"sizeLimit": size}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}},
                        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}}],
        },
    }


def rayservice(plan: Plan) -> dict[str, Any]:
    """The KubeRay RayService: the same Serve config on a head pod and one worker pod per replica."""
    o = plan.options
    cpus = replica_cpus(plan)
    bounds = replica_bounds(plan)
    scaling = bounds is not None
    low, high = bounds or (o.replicas, o.replicas)
    head = _container(plan, "ray-head", [("gcs", 6379), ("dashboard", 8265), ("client", 10001),
                                         ("serve", KUBERAY_SERVE_PORT)], "1", 2048 * MIB, 3072 * MIB)
    worker = _container(plan, "ray-worker", [("serve", KUBERAY_SERVE_PORT)], str(cpus),
                        plan.memory_request + RAY_OVERHEAD, plan.memory_limit + RAY_OVERHEAD)
    return {
        "apiVersion": "ray.io/v1", "kind": "RayService",
        "metadata": {"name": "slmkit", "namespace": o.namespace, "labels": {"app.kubernetes.io/name": "slmkit"}},
        "spec": {
            "serveConfigV2": _dump(serve_config(plan, port=KUBERAY_SERVE_PORT)),
            "rayClusterConfig": {
                "rayVersion": RAY_VERSION,
                "enableInTreeAutoscaling": scaling,
                **({"autoscalerOptions": {"upscalingMode": "Default", "idleTimeoutSeconds": 60}} if scaling else {}),
                # The head runs no replica (num-cpus 0): GCS, the Serve controller and a proxy.
                "headGroupSpec": {"rayStartParams": {"num-cpus": "0", "dashboard-host": "0.0.0.0"},
                                  "template": _pod(plan, head)},
                "workerGroupSpecs": [{
                    "groupName": "replicas", "replicas": low, "minReplicas": low, "maxReplicas": high,
                    "rayStartParams": {"num-cpus": str(cpus)}, "template": _pod(plan, worker),
                }],
            },
        },
    }


def prometheus_ray_config(sd_url: str) -> str:
    """Prometheus scraping every replica found through the ingress's /ray/replicas."""
    return _env().get_template("prometheus-ray.yml.j2").render(sd_url=sd_url)


def render_ray(plan: Plan) -> Files:
    if plan.vllm:
        raise InvalidRequest("the ray target runs slmkit's llama.cpp engine; for vLLM use k8s", param="engine")
    o = plan.options
    config = serve_config(plan, port=o.port)
    ctx = _context(plan, "ray")
    ctx.update({"args": pprint.pformat(config["applications"][0]["args"], sort_dicts=False, width=100),
                "ray_version": RAY_VERSION})
    return {
        "serve-config.yaml": _header(plan, "`serve deploy serve-config.yaml`") + _dump(config),
        "app.py": _env().get_template("ray/app.py.j2").render(ctx),
        "kuberay/rayservice.yaml": _header(plan, "`kubectl apply -f kuberay/rayservice.yaml`")
        + _dump(rayservice(plan)),
        "prometheus/prometheus.yml": prometheus_ray_config(f"http://127.0.0.1:{o.port}/ray/replicas"),
        "prometheus/alerts.yml": asset("alerts.yml").read_text(encoding="utf-8"),
        "grafana/dashboards/slmkit.json": asset("grafana-dashboard.json").read_text(encoding="utf-8"),
        "image/Dockerfile": _env().get_template("ray/Dockerfile.j2").render(ctx),
    }
