"""The embedded SmolLM2 GGUF as a Hugging Face folder (fp32 safetensors, tokenizer, chat template),
made once per test session through transformers, as `slm convert --to onnx` does internally; and
a store holding its MLX conversions (``mlx_home``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from slmkit.store.embedded import EMBEDDED
from tests.conftest import MODEL, slm


@pytest.fixture(scope="session")
def smollm_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers", reason="needs the convert extra: pip install 'slmkit[convert]'")
    cached = os.environ.get("SLM_TEST_HF_DIR")  # local iteration: keep the folder between runs
    out = Path(cached) if cached else tmp_path_factory.mktemp("hf") / "smollm2-135m-hf"
    if not (out / "config.json").is_file():
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
        done = subprocess.run([sys.executable, "-m", "slmkit.convert.hf_from_gguf", str(EMBEDDED[MODEL].path()),
                               str(out)], capture_output=True, text=True, env=env, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    return out


MLX_Q4 = "smol-mlx"  # the embedded GGUF -> MLX q4 (`slm convert MODEL --to mlx`)
MLX_Q8 = "smol-mlx:q8"  # the same model's Hugging Face folder -> MLX q8, groups of 32


@pytest.fixture(scope="session")
def mlx_home(smollm_hf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A store with the embedded SmolLM2 converted to MLX, once per session: q4 from the store's
    GGUF (the whole route: GGUF -> Hugging Face folder -> mlx-lm) and q8 from the Hugging Face
    folder the other conversion tests share."""
    pytest.importorskip("mlx_lm", reason="needs the mlx extra: pip install 'slmkit[mlx]'")
    home = tmp_path_factory.mktemp("mlx-home")
    if os.environ.get("SLM_TEST_MLX_HOME"):  # local iteration: keep the conversions between runs
        home = Path(os.environ["SLM_TEST_MLX_HOME"])
        if (home / "reports.json").is_file():
            return {"home": home, "reports": json.loads((home / "reports.json").read_text())}
    reports = {}
    plan = (("q4", MODEL, MLX_Q4, ()), ("q8", str(smollm_hf), MLX_Q8, ("--group-size", "32")))
    for quant, source, name, extra in plan:
        done = slm("convert", source, "--to", "mlx", "--quant", quant, *extra, "--name", name, "--json", home=home)
        assert done.returncode == 0, done.stderr
        reports[quant] = {**json.loads(done.stdout), "stderr": done.stderr}
    if os.environ.get("SLM_TEST_MLX_HOME"):
        (home / "reports.json").write_text(json.dumps(reports))
    return {"home": home, "reports": reports}
