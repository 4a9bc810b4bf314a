"""`slm deploy check DIR`: validate rendered (or hand-edited) files with the same checks as the tests."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

K8S_VERSIONS = ("1.29.0", "1.31.0")
# Prometheus-operator kinds: no schema ships offline, so they are skipped by name (and said so).
OPERATOR_GROUPS = ("monitoring.coreos.com/",)


@dataclass(frozen=True)
class CheckResult:
    check: str
    path: str
    status: str  # "ok", "failed" or "skipped"
    detail: str = ""


def _yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def _is_manifest(doc: Any) -> bool:
    return isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc and doc["kind"] != "Kustomization"


def check_manifests(root: Path, versions: tuple[str, ...] = K8S_VERSIONS) -> Iterator[CheckResult]:
    """Every Kubernetes object in ``root``, against the strict schemas of each version."""
    try:
        import kubernetes_validate
    except ImportError:
        yield CheckResult("kubernetes-validate", str(root), "skipped", "pip install kubernetes-validate")
        return
    for path in sorted(root.rglob("*.yaml")):
        for doc in _yaml_docs(path):
            if not _is_manifest(doc):
                continue
            name = f"{doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
            if str(doc["apiVersion"]).startswith("ray.io/"):
                continue  # KubeRay kinds: check_ray validates them against the vendored schema
            if str(doc["apiVersion"]).startswith(OPERATOR_GROUPS):
                yield CheckResult("kubernetes-validate", f"{path.relative_to(root)} {name}", "skipped",
                                  f"{doc['apiVersion']} is a Prometheus-operator CRD; no schema offline")
                continue
            for version in versions:
                try:
                    kubernetes_validate.validate(doc, version, strict=True)
                    yield CheckResult(f"kubernetes-validate {version}", f"{path.relative_to(root)} {name}", "ok")
                except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as exc:
                    yield CheckResult(f"kubernetes-validate {version}", f"{path.relative_to(root)} {name}",
                                      "failed", str(getattr(exc, "message", exc)).splitlines()[0])


def check_kustomize(root: Path) -> Iterator[CheckResult]:
    kubectl = shutil.which("kubectl")
    for kfile in sorted(root.rglob("kustomization.yaml")):
        if kfile.parent.name == "base" and (kfile.parent.parent / "overlays").is_dir():
            continue  # the overlays render the base
        where = str(kfile.parent.relative_to(root))
        if kubectl is None:
            yield CheckResult("kubectl kustomize", where, "skipped", "kubectl is not installed")
            continue
        proc = subprocess.run([kubectl, "kustomize", str(kfile.parent)], capture_output=True, text=True, check=False)
        detail = proc.stderr.strip().splitlines()[-1] if proc.returncode else ""
        yield CheckResult("kubectl kustomize", where, "ok" if proc.returncode == 0 else "failed", detail)


def compose_schema_path() -> Path:
    return Path(str(files("slmkit.deploy").joinpath("schemas/compose-spec.json")))


def check_compose(root: Path, schema: Path | None = None) -> Iterator[CheckResult]:
    import jsonschema

    path = root / "compose.yaml"
    if not path.is_file():
        return
    spec = json.loads((schema or compose_schema_path()).read_text(encoding="utf-8"))
    errors = sorted(jsonschema.Draft7Validator(spec).iter_errors(yaml.safe_load(path.read_text(encoding="utf-8"))),
                    key=str)
    detail = f"{'/'.join(map(str, errors[0].absolute_path))}: {errors[0].message}" if errors else ""
    yield CheckResult("compose schema", "compose.yaml", "failed" if errors else "ok", detail)


def check_rules(root: Path) -> Iterator[CheckResult]:
    """Alert rules, and the PrometheusRule's groups, through `promtool check rules`."""
    promtool = shutil.which("promtool")
    targets: list[tuple[str, str]] = []
    for path in sorted(root.rglob("*.y*ml")):
        for doc in _yaml_docs(path):
            if isinstance(doc, dict) and doc.get("kind") == "PrometheusRule":
                targets.append((str(path.relative_to(root)), yaml.safe_dump(doc["spec"])))
            elif isinstance(doc, dict) and "groups" in doc and "kind" not in doc:
                targets.append((str(path.relative_to(root)), path.read_text(encoding="utf-8")))
    for where, text in targets:
        if promtool is None:
            yield CheckResult("promtool check rules", where, "skipped", "promtool is not installed")
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".yml") as tmp:
            tmp.write(text)
            tmp.flush()
            proc = subprocess.run([promtool, "check", "rules", tmp.name], capture_output=True, text=True, check=False)
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-1] if proc.returncode else ""
        yield CheckResult("promtool check rules", where, "ok" if proc.returncode == 0 else "failed", detail)


def check_nginx(root: Path) -> Iterator[CheckResult]:
    """`nginx -t` on slmkit.conf inside a minimal main config whose paths are all in a temp dir."""
    path = root / "slmkit.conf"
    if not path.is_file():
        return
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        yield CheckResult("nginx -t", "slmkit.conf", "skipped", "nginx is not installed")
        return
    with tempfile.TemporaryDirectory() as tmp:
        main = nginx_main_config(Path(tmp), path)
        proc = subprocess.run([nginx, "-t", "-p", tmp, "-c", str(main), "-e", f"{tmp}/error.log"],
                              capture_output=True, text=True, check=False)
    detail = proc.stderr.strip().splitlines()[0] if proc.returncode else ""
    yield CheckResult("nginx -t", "slmkit.conf", "ok" if proc.returncode == 0 else "failed", detail)


def nginx_main_config(tmp: Path, include: Path, log_format: str = "combined") -> Path:
    """A main nginx.conf for an unprivileged nginx: pid, logs and temp files under ``tmp``."""
    fmt = "" if log_format == "combined" else f"    log_format slm '{log_format}';\n"
    temp_paths = "\n".join(f"    {kind}_temp_path {tmp}/{kind};" for kind in
                           ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = (f"worker_processes 1;\npid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\ndaemon off;\n"
            f"events {{ worker_connections 256; }}\nhttp {{\n{fmt}"
            f"    access_log {tmp}/access.log {'combined' if not fmt else 'slm'};\n{temp_paths}\n"
            f"    include {include.resolve()};\n}}\n")
    main = tmp / "nginx.conf"
    main.write_text(text, encoding="utf-8")
    return main


def check_dockerfile(root: Path) -> Iterator[CheckResult]:
    for path in sorted(root.rglob("Dockerfile")):
        users = [line.split()[1] for line in path.read_text(encoding="utf-8").splitlines()
                 if line.startswith("USER ")]
        ok = bool(users) and users[-1].split(":")[0] not in ("0", "root")
        yield CheckResult("Dockerfile runs as non-root", str(path.relative_to(root)), "ok" if ok else "failed",
                          "" if ok else "the last USER must be a non-root uid")


def check_dir(root: Path, compose_schema: Path | None = None) -> list[CheckResult]:
    """Every check that applies to what is in ``root``."""
    from slmkit.deploy.check_ray import check_ray

    return [*check_manifests(root), *check_kustomize(root), *check_compose(root, compose_schema),
            *check_rules(root), *check_nginx(root), *check_dockerfile(root), *check_ray(root)]
