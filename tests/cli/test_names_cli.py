"""Names at the command line (issue 15, Ollama items 1 and 2): `slm list` on a fresh store shows
the embedded models; ``name:latest`` and the catalog's Ollama-style aliases (``qwen3:4b``,
``smollm2:135m``) resolve in `slm run`, `slm models estimate` and a Modelfile's FROM. `slm pull`
by alias is in tests/store/test_hub_pull.py (against the local fake Hub)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from slmkit.cli.main import cli
from slmkit.store.embedded import EMBEDDED
from slmkit.store.store import Store
from tests.inprocess import MODEL, Engines, engines, home

__all__ = ["engines", "home"]


def slm(home: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"SLM_HOME": str(home)}, catch_exceptions=False)


def test_list_on_a_fresh_store_shows_the_embedded_models(home: Path) -> None:
    listed = json.loads(slm(home, "list", "--json").stdout)
    embedded = {f"{m['name']}:{m['tag']}": m for m in listed}
    assert f"{MODEL}:latest" in embedded and "all-minilm-l6-v2:latest" in embedded
    assert embedded[f"{MODEL}:latest"]["source"] == {"kind": "embedded", "package": EMBEDDED[MODEL].package}
    assert embedded[f"{MODEL}:latest"]["model"]["size"] == EMBEDDED[MODEL].path().stat().st_size
    table = slm(home, "list").stdout
    assert f"{MODEL}:latest" in table and "embedded" in table
    assert not (home / "converted").exists()  # listing converts nothing


def test_list_shows_a_store_copy_once(home: Path) -> None:
    slm(home, "pull", MODEL)
    listed = [f"{m['name']}:{m['tag']}:{m['source']['kind']}" for m in json.loads(slm(home, "list", "--json").stdout)]
    assert f"{MODEL}:latest:package" in listed and f"{MODEL}:latest:embedded" not in listed


@pytest.mark.parametrize("name", [f"{MODEL}:latest", "smollm2:135m", "SmolLM2:135M"])
def test_run_takes_tags_and_aliases(name: str, home: Path, engines: Engines) -> None:
    result = CliRunner().invoke(cli, ["run", name, "hi", "--ctx-size", "2048"], env={"SLM_HOME": str(home)},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert list(engines.opened) == [MODEL] and engines[MODEL].requests


@pytest.mark.parametrize(("name", "model", "quant"), [
    ("qwen3:4b", "qwen3-4b", "q4_k_m"),
    ("qwen3:4b-q8_0", "qwen3-4b", "q8_0"),
    ("llama3.2:latest", "llama-3.2-3b", "q4_k_m"),
    ("gemma3:1b", "gemma-3-1b", "q4_k_m"),
])
def test_estimate_takes_ollama_names(name: str, model: str, quant: str, home: Path) -> None:
    result = slm(home, "models", "estimate", name, "--json")
    assert result.exit_code == 0, result.output
    estimate = json.loads(result.stdout)
    assert (estimate["model"], estimate["quant"]) == (model, quant)


def test_estimate_of_an_embedded_alias_reads_its_file(home: Path) -> None:
    estimate = json.loads(slm(home, "models", "estimate", "smollm2:135m", "--json").stdout)
    assert estimate["disk_bytes"] == EMBEDDED[MODEL].path().stat().st_size


@pytest.mark.parametrize("base", ["smollm2:135m", f"{MODEL}:latest"])
def test_modelfile_from_takes_tags_and_aliases(base: str, home: Path, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {base}\nSYSTEM hi\n")
    result = slm(home, "create", "mine", "-f", str(modelfile))
    assert result.exit_code == 0, result.output
    mine = Store(home).get("mine")
    assert mine.file_name == EMBEDDED[MODEL].filename and mine.profile is not None and mine.profile.system == "hi"


def test_modelfile_from_a_catalog_alias_not_pulled_says_pull_it(home: Path, tmp_path: Path) -> None:
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM qwen3:4b\n")
    result = CliRunner().invoke(cli, ["create", "mine", "-f", str(modelfile)], env={"SLM_HOME": str(home)})
    assert result.exit_code != 0 and "slm pull qwen3:4b" in result.output
