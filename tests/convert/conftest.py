"""The embedded SmolLM2 GGUF as a Hugging Face folder (fp32 safetensors, tokenizer, chat template),
made once per test session through transformers, as `slm convert --to onnx` does internally."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slmkit.store.embedded import EMBEDDED
from tests.conftest import MODEL


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
