"""`slm convert --to onnx`: the embedded GGUF to int4 and int8 ONNX models in the store, and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from slmkit.convert import onnx as convert_onnx
from slmkit.errors import ConversionError
from slmkit.store.embedded import EMBEDDED
from slmkit.store.store import Store
from tests.conftest import MODEL, slm
from tests.helpers import free_port


@pytest.mark.slow
def test_int4_and_int8_are_registered_as_onnx(onnx_home: dict[str, Any]) -> None:
    store = Store(onnx_home["home"])
    sizes = {}
    for precision, name in (("int4", f"{MODEL}:onnx-int4"), ("int8", f"{MODEL}:latest")):
        report = onnx_home["reports"][precision]
        assert report["name"] == name and report["precision"] == precision
        assert report["source_format"] == "gguf" and report["source_bits"] < 8
        assert report["seconds"] > 0
        # the source is Q4_1: the report warns that re-quantizing costs quality
        assert report["warnings"] and "already quantized" in report["warnings"][0]
        assert "warning" in report["stderr"]
        manifest = store.get(name)
        assert manifest.format == "onnx" and manifest.source["from"] == MODEL
        folder = store.model_path(manifest)
        assert folder.is_dir()
        files = {p.name for p in folder.iterdir()}
        assert {"genai_config.json", "model.onnx", "tokenizer.json"} <= files
        assert "chat_template.jinja" in files or "chat_template" in (folder / "tokenizer_config.json").read_text()
        assert manifest.size == report["size"] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        sizes[precision] = report["size"]
    assert sizes["int4"] < sizes["int8"]
    assert not [p for p in (onnx_home["home"] / "tmp").iterdir() if p.name.startswith("convert-")]


@pytest.mark.slow
def test_list_shows_onnx_models(onnx_home: dict[str, Any]) -> None:
    done = slm("list", "--json", home=onnx_home["home"])
    assert done.returncode == 0, done.stderr
    listed = {(m["name"], m["tag"]): m["model"]["format"] for m in json.loads(done.stdout)
              if m["source"]["kind"] != "embedded"}
    assert listed == {(MODEL, "onnx-int4"): "onnx", (MODEL, "latest"): "onnx"}


def _hf_folder(root: Path, architecture: str) -> Path:
    folder = root / "hf-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": [architecture], "model_type": "bert"}))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    return folder


def test_unsupported_architecture_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = slm("convert", str(_hf_folder(tmp_path, "BertModel")), "--to", "onnx", home=home)
    assert done.returncode != 0
    assert "cannot export the architecture BertModel" in done.stderr
    assert "Traceback" not in done.stderr
    assert Store(home).list() == []
    assert not list((home / "tmp").glob("convert-*"))


def test_folder_without_config_is_refused(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = slm("convert", str(tmp_path / "empty"), "--to", "onnx", home=tmp_path / "home")
    assert done.returncode != 0 and "no config.json" in done.stderr and "Traceback" not in done.stderr


def test_serving_a_folder_without_genai_config_fails_clearly(tmp_path: Path) -> None:
    folder = tmp_path / "not-onnx"
    folder.mkdir()
    done = slm("serve", "--model", str(folder), "--port", str(free_port()), home=tmp_path / "home", timeout=120)
    assert done.returncode != 0
    assert "no genai_config.json" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_interrupted_conversion_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "slmkit", "convert", MODEL, "--to", "onnx", "--precision", "int4", "--threads", "1"]
    # Ctrl-C as a terminal sends it: with SIGINT at its default in the child, whatever an earlier
    # test left in this process (a child inherits an ignored SIGINT, and Python then keeps it ignored)
    proc = subprocess.Popen(cmd, env={**os.environ, "SLM_HOME": str(home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    parent = psutil.Process(proc.pid)
    while time.monotonic() < deadline and not (list((home / "tmp").glob("convert-*")) and parent.children()):
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    time.sleep(1)  # the dequantizing child process is running and the parent waits on it
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0 and "Traceback" not in stderr, (proc.returncode, stdout[-2000:], stderr[-2000:])
    assert Store(home).list() == []
    assert not list((home / "tmp").glob("convert-*"))
    assert not list((home / "blobs").glob("*")) if (home / "blobs").exists() else True


def test_bad_options_are_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="applies to int4 and int8 only"):
        convert_onnx.convert_to_onnx(Store(tmp_path), MODEL, "fp32", algo="k_quant")
    done = slm("convert", MODEL, "--to", "onnx", "--precision", "int3", home=tmp_path)
    assert done.returncode != 0 and "int3" in done.stderr


def test_missing_extra_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    # the extra cannot be uninstalled for one test: hide torch from the import system instead
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(ConversionError, match=r"pip install (-e )?'(slmkit|\.)\[convert\]'.* \(missing: torch\)"):
        convert_onnx._require_extra()


@pytest.mark.slow
def test_run_and_show_with_an_onnx_model(onnx_home: dict[str, Any]) -> None:
    done = slm("run", f"{MODEL}:onnx-int4", "What is the capital of France?", "--temperature", "0",
               "--max-tokens", "12", "--threads", "2", home=onnx_home["home"], timeout=120)
    assert done.returncode == 0, done.stderr
    assert "paris" in done.stdout.lower()
    shown = slm("show", f"{MODEL}:onnx-int4", home=onnx_home["home"])
    assert shown.returncode != 0 and "is an onnx model" in shown.stderr and "Traceback" not in shown.stderr


@pytest.mark.slow
def test_eval_scores_onnx_drift_from_the_gguf(onnx_home: dict[str, Any], tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. " * 40)
    gguf = str(EMBEDDED[MODEL].path())  # in this store the bare name is the int8 ONNX model
    done = slm("eval", gguf, f"{MODEL}:onnx-int4", "--no-tasks", "--text", str(text), "--window", "64",
               "--max-tokens", "200", "--threads", "2", "--no-plots", "--json", home=onnx_home["home"], timeout=300)
    assert done.returncode == 0, done.stderr
    models = json.loads(done.stdout)["models"]
    assert models[1]["size_bytes"] > 10_000_000
    assert models[1]["drift"]["perplexity"] > 1 and 0 < models[1]["drift"]["top1_agreement"] <= 1


def test_store_folder_blobs_are_content_addressed_and_removed(tmp_path: Path) -> None:
    from slmkit.store.store import Manifest

    store = Store(tmp_path / "home")
    digests = []
    for _ in range(2):
        folder = store.temp_dir("convert-")
        (folder / "genai_config.json").write_text('{"model": {}}')
        (folder / "model.onnx").write_bytes(b"onnx")
        digests.append(store.add_folder(folder))
        assert not folder.exists()
    assert digests[0] == digests[1] and digests[0][1] == len('{"model": {}}') + 4
    digest, size = digests[0]
    store.write_manifest(Manifest(name="m", tag="onnx", digest=digest, size=size, format="onnx"))
    assert (store.model_path(store.get("m:onnx")) / "model.onnx").read_bytes() == b"onnx"
    store.remove("m:onnx")
    assert not store.blob_path(digest).exists()
