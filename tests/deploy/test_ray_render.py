"""`slm deploy ray`: what it writes, sized from the estimate, and `slm deploy check` on it (no cluster)."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from slmkit.cli.main import cli
from slmkit.deploy import DeployOptions, plan
from slmkit.deploy.check import check_dir
from tests.deploy.test_cli import assert_one_line_error, slm

pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'slmkit[ray]'")
EMBEDDED = "smollm2-135m-instruct"


def render(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "ray"
    done = slm("ray", "-m", EMBEDDED, "--out", str(out), *args)
    assert done.returncode == 0, done.stderr
    return out


def check(out: Path) -> list[dict[str, Any]]:
    done = slm("check", str(out), "--json")
    results: list[dict[str, Any]] = json.loads(done.stdout)
    assert (done.returncode == 0) == all(r["status"] != "failed" for r in results)
    return results


def rayservice(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((out / "kuberay" / "rayservice.yaml").read_text())
    return doc


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("ray"), "--replicas", "2", "--slots", "2", "--ctx", "512",
                  "--api-keys-secret", "slm-keys")


def test_fixed_replicas_render_and_pass_every_check(fixed: Path) -> None:
    out = fixed
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {
        "serve-config.yaml", "app.py", "kuberay/rayservice.yaml", "prometheus/prometheus.yml",
        "prometheus/alerts.yml", "grafana/dashboards/slmkit.json", "image/Dockerfile"}
    config = yaml.safe_load((out / "serve-config.yaml").read_text())
    app = config["applications"][0]
    deployment = app["deployments"][0]
    sized = plan(DeployOptions(model=EMBEDDED, replicas=2, slots=2, ctx=512))
    assert app["import_path"] == "slmkit.deploy.ray_app:build" and app["args"]["model"] == EMBEDDED
    discovery = config["applications"][1]
    assert (discovery["route_prefix"], discovery["import_path"]) == ("/ray", "slmkit.deploy.ray_app:discovery")
    assert deployment["num_replicas"] == 2 and "autoscaling_config" not in deployment
    assert deployment["ray_actor_options"] == {"num_cpus": int(sized.cpu_request), "memory": sized.memory_request}
    assert deployment["graceful_shutdown_timeout_s"] == 30 and deployment["health_check_period_s"] > 0
    assert app["args"]["settings"]["engine__parallel"] == 2 and app["args"]["settings"]["engine__ctx_size"] == 512
    module = ast.parse((out / "app.py").read_text())  # the Python module: same args, importable syntax
    args = next(n.value for n in module.body if isinstance(n, ast.Assign) and n.targets[0].id == "ARGS")  # type: ignore[attr-defined]
    assert ast.literal_eval(args) == app["args"]
    service = rayservice(out)
    assert yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]["args"] == app["args"]
    worker = service["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]
    assert (worker["replicas"], worker["minReplicas"], worker["maxReplicas"]) == (2, 2, 2)
    env = {e["name"]: e for e in worker["template"]["spec"]["containers"][0]["env"]}
    assert env["SLM_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "slm-keys", "key": "api-key"}
    assert env["RAY_SERVE_PROXY_PREFER_LOCAL_NODE_ROUTING"]["value"] == "0"
    results = check(out)
    ok = {(r["check"], r["path"]) for r in results if r["status"] == "ok"}
    assert ("Ray Serve config", "serve-config.yaml") in ok
    assert ("KubeRay RayService schema", "kuberay/rayservice.yaml RayService/slmkit") in ok
    assert sum(r["check"].startswith("kubernetes-validate") for r in results if r["status"] == "ok") == 4
    assert all(r["status"] != "failed" for r in results), results


def test_autoscaling_flags(tmp_path: Path) -> None:
    out = render(tmp_path, "--min-replicas", "1", "--max-replicas", "3", "--target-ongoing-requests", "2")
    deployment = yaml.safe_load((out / "serve-config.yaml").read_text())["applications"][0]["deployments"][0]
    scaling = deployment["autoscaling_config"]
    assert (scaling["min_replicas"], scaling["max_replicas"], scaling["target_ongoing_requests"]) == (1, 3, 2)
    assert "num_replicas" not in deployment
    cluster = rayservice(out)["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    worker = cluster["workerGroupSpecs"][0]
    assert (worker["minReplicas"], worker["maxReplicas"]) == (1, 3)


def test_prometheus_config_discovers_replicas(fixed: Path) -> None:
    out = fixed
    prom = yaml.safe_load((out / "prometheus" / "prometheus.yml").read_text())
    job = prom["scrape_configs"][0]
    assert job["job_name"] == "slmkit"  # the shipped alert rules select job="slmkit"
    assert job["http_sd_configs"][0]["url"].endswith("/ray/replicas")
    promtool = shutil.which("promtool")
    if promtool:
        done = subprocess.run([promtool, "check", "config", str(out / "prometheus" / "prometheus.yml")],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("edit", "fragment"), [
    (lambda s, c: s["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(replicas=9), "maxReplicas"),
    (lambda s, c: s["spec"].update(serveConfig2="typo"), "serveConfig2"),
    (lambda s, c: c["applications"][0]["deployments"][0].update(max_ongoing_requests=-1), "serve-config.yaml"),
    (lambda s, c: c["applications"][0]["args"]["settings"].update(engine__parallel=0), "slmkit app args"),
])
def test_check_reports_a_broken_edit(fixed: Path, tmp_path: Path, edit: Any, fragment: str) -> None:
    out = Path(shutil.copytree(fixed, tmp_path / "edited"))
    service = rayservice(out)
    config = yaml.safe_load((out / "serve-config.yaml").read_text())
    edit(service, config)
    (out / "kuberay" / "rayservice.yaml").write_text(yaml.safe_dump(service))
    (out / "serve-config.yaml").write_text(yaml.safe_dump(config))
    failed = [" ".join((r.check, r.path, r.detail)) for r in check_dir(out) if r.status == "failed"]
    assert failed and fragment in " ".join(failed), failed


@pytest.mark.parametrize(("args", "fragments"), [
    (["--replicas", "2", "--min-replicas", "1"], ["either --replicas N or --min-replicas"]),
    (["--engine", "vllm"], ["for vLLM use k8s"]),
    (["--min-replicas", "3", "--max-replicas", "2"], ["--max-replicas must be at least"]),
    (["--target-ongoing-requests", "0", "--max-replicas", "2"], ["--target-ongoing-requests must be above 0"]),
])
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], fragments: list[str]) -> None:
    """In process (the CLI contract itself is test_cli's): one line on stderr, non-zero, nothing written."""
    model = EMBEDDED if "vllm" not in args else "qwen3-1.7b"
    result = CliRunner().invoke(cli, ["deploy", "ray", "-m", model, "--out", str(tmp_path / "o"), *args])
    done = subprocess.CompletedProcess([], result.exit_code, result.stdout, result.stderr)
    assert_one_line_error(done, *fragments)
    assert not (tmp_path / "o").exists()


def test_min_replicas_is_for_ray_only(tmp_path: Path) -> None:
    assert_one_line_error(slm("k8s", "-m", EMBEDDED, "--min-replicas", "1", "--out", str(tmp_path / "o")),
                          "for the ray target")



def test_replica_discovery_needs_the_key_when_one_is_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`/ray/replicas` (internal addresses) is behind the same key as the server's routes."""
    from slmkit.deploy.ray_app import authorize
    from slmkit.errors import Unauthorized
    from slmkit.server.auth import KeyStore
    from slmkit.settings import load_settings

    keys = KeyStore(tmp_path / "keys.sqlite")  # empty
    authorize(load_settings(security__api_key=None), keys, None)  # no key configured: open, like the server
    keyed = load_settings(security__api_key="s3cret")
    for header in (None, "Bearer wrong"):
        with pytest.raises(Unauthorized):
            authorize(keyed, keys, header)
    authorize(keyed, keys, "Bearer s3cret")
