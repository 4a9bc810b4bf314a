"""`slm convert --to mlx`: the embedded SmolLM2 to q4 and q8 MLX models in the store, their
perplexity against the GGUF (`slm eval`), the in-process bench, and bad input."""

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

from slmkit.cli.convert import _check_flags
from slmkit.convert import mlx as convert_mlx
from slmkit.errors import InvalidRequest
from slmkit.store.embedded import EMBEDDED, EmbeddedSentenceTransformer
from slmkit.store.store import Store
from tests.conftest import MODEL, slm
from tests.convert.conftest import MLX_Q4, MLX_Q8
from tests.fakehub import FakeHub, HubFile


@pytest.mark.slow
def test_q4_and_q8_are_registered_as_mlx(mlx_home: dict[str, Any]) -> None:
    store = Store(mlx_home["home"])
    q4, q8 = mlx_home["reports"]["q4"], mlx_home["reports"]["q8"]
    assert (q4["name"], q4["source_format"], q4["group_size"]) == (f"{MLX_Q4}:latest", "gguf", 64)
    assert (q8["name"], q8["source_format"], q8["group_size"]) == (MLX_Q8, "hf", 32)
    # the GGUF is Q4_1: re-quantizing it is flagged, with the command that measures the drift
    assert q4["source_bits"] < 8 and "already quantized" in q4["warnings"][0] and "warning" in q4["stderr"]
    assert q4["drift_check"] == f"slm eval {MODEL} {MLX_Q4}:latest --no-tasks" and not q8["warnings"]
    for report, bits in ((q4, 4), (q8, 8)):
        manifest = store.get(report["name"])
        assert manifest.format == "mlx" and manifest.source["to"] == "mlx" and manifest.source["bits"] == bits
        folder = store.model_path(manifest)
        config = json.loads((folder / "config.json").read_text())
        assert config["quantization"]["bits"] == bits and config["quantization"]["group_size"] == report["group_size"]
        assert config["rope_theta"] == 100000  # what mlx-lm reads; transformers 5 nests it in rope_parameters
        assert {"model.safetensors", "tokenizer.json", "chat_template.jinja"} <= {p.name for p in folder.iterdir()}
        assert manifest.size == report["size"] == sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert q4["size"] < q8["size"]
    assert not list((mlx_home["home"] / "tmp").glob("convert-*"))
    listed = json.loads(slm("list", "--json", home=mlx_home["home"]).stdout)
    listed = [m for m in listed if m["source"]["kind"] != "embedded"]  # the store's own
    assert {(m["name"], m["tag"], m["model"]["format"]) for m in listed} == {(MLX_Q4, "latest", "mlx"),
                                                                               ("smol-mlx", "q8", "mlx")}


@pytest.mark.slow
def test_eval_reports_the_perplexity_ratio_to_the_gguf(mlx_home: dict[str, Any], tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_text("The quick brown fox jumps over the lazy dog. A stitch in time saves nine. " * 12)
    done = slm("eval", str(EMBEDDED[MODEL].path()), MLX_Q4, MLX_Q8, "--no-tasks", "--text", str(text), "--window",
               "32", "--max-tokens", "40", "--threads", "2", "--no-plots", "--json", home=mlx_home["home"], timeout=300)
    assert done.returncode == 0, done.stderr
    _, q4, q8 = json.loads(done.stdout)["models"]
    for model in (q4, q8):
        assert model["drift"]["perplexity_ratio"] > 0 and 0 < model["drift"]["top1_agreement"] <= 1
    assert q8["drift"]["kl_mean"] < q4["drift"]["kl_mean"]  # 8 bits stay closer to the source than 4


@pytest.mark.slow
def test_engine_bench_runs_on_mlx(mlx_home: dict[str, Any]) -> None:
    done = slm("bench", "--engine", "mlx", "--model", MLX_Q4, "--batch-sizes", "1,2", "--prompt-tokens", "8",
               "--gen-tokens", "2", "--repeats", "1", "--no-plots", "--json", home=mlx_home["home"], timeout=300)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["engine"] == "mlx" and [r["batch_size"] for r in doc["results"]] == [1, 2]
    assert all(r["pp_tokens_per_s"] > 0 and r["tg_tokens_per_s"] > 0 for r in doc["results"])
    wrong = slm("bench", "--engine", "mlx", "--model", MODEL, home=mlx_home["home"])
    assert wrong.returncode != 0 and "is in gguf format; --engine mlx benches mlx models" in wrong.stderr


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_unsupported_family_from_the_hub_is_refused(tmp_path: Path) -> None:
    """hf.co/OWNER/REPO is fetched (only what a conversion reads), then refused: mlx-lm has no BERT."""
    pytest.importorskip("mlx_lm")
    minilm = EMBEDDED["all-minilm-l6-v2"]
    assert isinstance(minilm, EmbeddedSentenceTransformer)
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    files = {p.relative_to(minilm.source_dir()).as_posix(): HubFile(p.read_bytes())
             for p in minilm.source_dir().rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    files["pytorch_model.bin"] = HubFile(b"not fetched")
    hub = FakeHub(repos={repo: files}).start()
    home = tmp_path / "home"
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_TOKEN")}
        env.update({"SLM_HOME": str(home), "HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")})
        done = subprocess.run([sys.executable, "-m", "slmkit", "convert", f"hf.co/{repo}", "--to", "mlx"],
                              capture_output=True, text=True, env=env, timeout=300)
        assert hub.file_hits("config.json") and not hub.file_hits("pytorch_model.bin")
    finally:
        hub.close()
    assert "mlx-lm cannot convert the model family BertModel (model_type 'bert')" in _one_line_error(done)
    assert Store(home).list() == [] and not list((home / "tmp").glob("convert-*"))


def test_bad_options_are_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="MLX quantizes in groups of 32, 64, 128 weights, not 48"):
        convert_mlx.convert_to_mlx(Store(tmp_path), MODEL, "q4", group_size=48)
    with pytest.raises(InvalidRequest, match="MLX has no quant type 'q4_k_m'; choose one of q4, q8, f16"):
        convert_mlx.convert_to_mlx(Store(tmp_path), MODEL, "q4_k_m")
    with pytest.raises(InvalidRequest, match="--algo does not apply to --to mlx"):
        _check_flags("mlx", algo="k_quant", provider=None, optimizer=None)
    line = _one_line_error(slm("convert", MODEL, "--to", "mlx", "--quant", "q4_k_m", home=tmp_path))
    assert "--quant q4_k_m does not apply to --to mlx; choose one of q4, q8, f16 (MLX has no k-quants" in line
    assert not (tmp_path / "tmp").exists() or not list((tmp_path / "tmp").iterdir())


# The CLI with mlx and mlx_lm hidden from the import system (the extra cannot be uninstalled for a test)
_WITHOUT_MLX = ("import importlib.util as u, sys; real = u.find_spec; "
                "u.find_spec = lambda n, *a: None if n.split('.')[0] in ('mlx', 'mlx_lm') else real(n, *a); "
                "from slmkit.cli.main import main; sys.argv[0] = 'slm'; main()")


def test_missing_extra_is_one_line_with_the_install_hint(mlx_home: dict[str, Any]) -> None:
    env = {**os.environ, "SLM_HOME": str(mlx_home["home"])}
    for args in (("convert", MODEL, "--to", "mlx"), ("run", MLX_Q4, "hi", "--max-tokens", "2")):
        done = subprocess.run([sys.executable, "-c", _WITHOUT_MLX, *args], env=env, capture_output=True, text=True,
                              timeout=120)
        line = _one_line_error(done)
        assert "pip install 'slmkit[mlx]' (missing: mlx, mlx_lm)" in line, line


@pytest.mark.slow
def test_interrupted_conversion_leaves_nothing(tmp_path: Path) -> None:
    pytest.importorskip("mlx_lm")
    home = tmp_path / "home"
    cmd = [sys.executable, "-m", "slmkit", "convert", MODEL, "--to", "mlx", "--quant", "q8"]
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
    assert not (home / "blobs").exists() or not list((home / "blobs").iterdir())
