"""Rendered trees for every target: the embedded model on llama.cpp, a catalog model on vLLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmkit.deploy import DeployOptions, plan, render, write_tree

EMBEDDED = "smollm2-135m-instruct"
VLLM_MODEL = "qwen3-1.7b"
LLAMACPP_TARGETS = ("docker", "compose", "k8s", "nginx")
VLLM_TARGETS = ("docker", "compose", "k8s")


def render_to(root: Path, target: str, options: DeployOptions) -> Path:
    out = root / f"{options.engine}-{target}"
    write_tree(render(target, plan(options)), out)
    return out


@pytest.fixture(scope="session")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """(engine, target) -> the directory `slm deploy` wrote."""
    root = tmp_path_factory.mktemp("deploy")
    trees = {}
    for target in LLAMACPP_TARGETS:
        options = DeployOptions(model=EMBEDDED, replicas=3, api_keys_secret="slm-keys", with_webui=True)
        trees[("llamacpp", target)] = render_to(root, target, options)
    for target in VLLM_TARGETS:
        options = DeployOptions(model=VLLM_MODEL, engine="vllm", replicas=2, api_keys_secret="slm-keys",
                                with_webui=True)
        trees[("vllm", target)] = render_to(root, target, options)
    return trees
