"""`slm convert --to onnx --optimizer olive`: the install hint, the version check, the flags, and
(when the installed Olive can drive the installed onnxruntime-genai) a CPU conversion."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from slmkit.convert import olive
from slmkit.errors import ConversionError
from slmkit.store.store import Store
from tests.conftest import MODEL, slm


def test_missing_olive_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "olive" else real(name, *a))
    with pytest.raises(ConversionError, match=r"^--optimizer olive needs Olive: pip install olive-ai$"):
        olive.require_olive()


def test_olive_flags_are_checked_before_any_work(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = slm("convert", MODEL, "--to", "onnx", "--execution-provider", "dml", home=home)
    assert done.returncode != 0 and "needs --optimizer olive" in done.stderr and "Traceback" not in done.stderr
    done = slm("convert", MODEL, "--to", "onnx", "--optimizer", "olive", "--algo", "k_quant", home=home)
    assert done.returncode != 0 and "--algo applies to the builder only" in done.stderr
    done = slm("convert", MODEL, "--to", "onnx", "--execution-provider", "cuda", home=home)
    assert done.returncode != 0 and "cuda" in done.stderr
    assert Store(home).list() == []


def test_workflow_config_targets_the_execution_provider(tmp_path: Path) -> None:
    config = olive.olive_config(tmp_path / "hf", tmp_path / "out", tmp_path / "cache", "int4", "dml")
    accelerator = config["systems"]["local_system"]["accelerators"][0]
    assert accelerator == {"device": "gpu", "execution_providers": ["DmlExecutionProvider"]}
    builder = config["passes"]["builder"]
    assert builder["type"] == "ModelBuilder" and builder["precision"] == "int4"
    assert builder["extra_options"]["shared_embeddings"] == "false"
    assert config["output_dir"] == str(tmp_path / "out")


@pytest.mark.slow
def test_olive_cpu_conversion_or_a_clear_refusal(smollm_hf: Path, tmp_path: Path) -> None:
    """Olive drives onnxruntime-genai's builder; Olive 0.13 imports a module onnxruntime-genai
    0.18 no longer has, and then the conversion is refused in one line before any work."""
    pytest.importorskip("olive", reason="needs Olive: pip install olive-ai")
    home = tmp_path / "home"
    done = slm("convert", str(smollm_hf), "--to", "onnx", "--optimizer", "olive", "--precision", "int4",
               "--threads", "2", "--json", home=home, timeout=900)
    if olive._missing_builder_modules():
        assert done.returncode != 0 and "Traceback" not in done.stderr
        assert "cannot drive onnxruntime-genai" in done.stderr
        assert Store(home).list() == []
        return
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["optimizer"] == "olive" and report["provider"] == "cpu"
    manifest = Store(home).get(report["name"])
    assert manifest.format == "onnx" and manifest.source["optimizer"] == "olive"
    assert (Store(home).model_path(manifest) / "genai_config.json").is_file()
    assert not list((home / "tmp").glob("convert-*"))
