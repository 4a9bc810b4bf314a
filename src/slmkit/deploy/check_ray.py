"""`slm deploy check` for `slm deploy ray` output: the Serve config and the KubeRay RayService.

- serve-config.yaml (and each RayService's serveConfigV2) against Ray Serve's own config model
  (``ray.serve.schema.ServeDeploySchema``, skipped without Ray), and slmkit's application ``args``;
- the RayService against the vendored KubeRay schema (schemas/kuberay-rayservice.json), its
  head and worker pod templates with kubernetes-validate as v1 PodTemplates, and its worker
  group's replica bounds (min <= replicas <= max, as the KubeRay operator requires).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from slmkit.deploy.check import K8S_VERSIONS, CheckResult

IMPORT_PATH = "slmkit.deploy.ray_app:build"


def rayservice_schema_path() -> Path:
    return Path(str(files("slmkit.deploy").joinpath("schemas/kuberay-rayservice.json")))


def _first_error(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]


def check_serve_config(where: str, config: Any) -> Iterator[CheckResult]:
    try:
        from ray.serve.schema import ServeDeploySchema
    except ImportError:
        yield CheckResult("Ray Serve config", where, "skipped", "pip install 'slmkit[ray]'")
        return
    try:
        schema = ServeDeploySchema.model_validate(config)
    except Exception as exc:  # pydantic's ValidationError, as Ray's own `serve deploy` reports it
        yield CheckResult("Ray Serve config", where, "failed", _first_error(exc).replace("\n", " "))
        return
    yield CheckResult("Ray Serve config", where, "ok")
    for app in schema.applications:
        if app.import_path != IMPORT_PATH:
            continue
        yield from _check_slmkit_app(f"{where} app {app.name}", app.args,
                                     [d.name for d in app.deployments])


def _check_slmkit_app(where: str, args: dict[str, Any], deployments: list[str]) -> Iterator[CheckResult]:
    from pydantic import ValidationError

    from slmkit.settings import load_settings

    try:
        from slmkit.deploy.ray_app import RayAppArgs
        parsed = RayAppArgs.model_validate(args)
        load_settings(**parsed.settings)
    except ImportError:
        yield CheckResult("slmkit app args", where, "skipped", "pip install 'slmkit[ray]'")
        return
    except (ValidationError, ValueError) as exc:
        yield CheckResult("slmkit app args", where, "failed", _first_error(exc))
        return
    unknown = sorted(set(deployments) - {"slmkit"})
    detail = f"no deployment named {', '.join(unknown)} (the one deployment is 'slmkit')" if unknown else ""
    yield CheckResult("slmkit app args", where, "failed" if unknown else "ok", detail)


def check_rayservice(where: str, doc: dict[str, Any], schema: dict[str, Any]) -> Iterator[CheckResult]:
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=str)
    detail = f"{'/'.join(map(str, errors[0].absolute_path))}: {errors[0].message}" if errors else ""
    yield CheckResult("KubeRay RayService schema", where, "failed" if errors else "ok", detail)
    if errors:
        return
    spec = doc["spec"]
    if "serveConfigV2" in spec:
        try:
            serve = yaml.safe_load(spec["serveConfigV2"])
        except yaml.YAMLError as exc:
            yield CheckResult("Ray Serve config", f"{where} serveConfigV2", "failed", _first_error(exc))
        else:
            yield from check_serve_config(f"{where} serveConfigV2", serve)
    cluster = spec["rayClusterConfig"]
    groups = [("head", cluster["headGroupSpec"]), *((g["groupName"], g) for g in cluster.get("workerGroupSpecs", []))]
    for name, group in groups:
        yield from _check_pod_template(f"{where} {name} pod", group["template"])
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 2**31 - 1)
        if name != "head" and not low <= group.get("replicas", low) <= high:
            yield CheckResult("KubeRay replica bounds", f"{where} {name}", "failed",
                              f"need minReplicas ({low}) <= replicas <= maxReplicas ({high})")


def _check_pod_template(where: str, template: dict[str, Any]) -> Iterator[CheckResult]:
    try:
        import kubernetes_validate
    except ImportError:
        yield CheckResult("kubernetes-validate", where, "skipped", "pip install kubernetes-validate")
        return
    doc = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "ray"}, "template": template}
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
            yield CheckResult(f"kubernetes-validate {version}", where, "ok")
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
            yield CheckResult(f"kubernetes-validate {version}", where, "failed",
                              str(getattr(exc, "message", exc)).splitlines()[0])


def check_ray(root: Path) -> Iterator[CheckResult]:
    config = root / "serve-config.yaml"
    if config.is_file():
        yield from check_serve_config("serve-config.yaml", yaml.safe_load(config.read_text(encoding="utf-8")))
    schema: dict[str, Any] | None = None
    for path in sorted(root.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == "RayService":
                schema = schema or json.loads(rayservice_schema_path().read_text(encoding="utf-8"))
                name = doc.get("metadata", {}).get("name", "?")
                yield from check_rayservice(f"{path.relative_to(root)} RayService/{name}", doc, schema)
