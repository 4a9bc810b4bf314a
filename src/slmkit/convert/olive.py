"""`slm convert --to onnx --optimizer olive`: Olive's ModelBuilder workflow instead of calling
onnxruntime-genai's builder directly.

Olive (``pip install olive-ai``) wraps the same builder in a workflow that knows execution
providers and devices, for users who target DirectML, Qualcomm QNN or OpenVINO rather than the
CPU. Only the CPU target is run and tested here; the others are written as Olive documents them
and marked untested in docs/models.md. The workflow runs as a child process
(``python -m olive run --config``); its output folder (model, genai_config.json, tokenizer) is
registered like the builder's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from slmkit.errors import ConversionError

OPTIMIZERS = ("builder", "olive")
EXECUTION_PROVIDERS = ("cpu", "dml", "qnn", "openvino")
# our name -> (Olive accelerator device, ONNX Runtime execution provider)
_TARGETS = {
    "cpu": ("cpu", "CPUExecutionProvider"),
    "dml": ("gpu", "DmlExecutionProvider"),
    "qnn": ("npu", "QNNExecutionProvider"),
    "openvino": ("cpu", "OpenVINOExecutionProvider"),
}
OLIVE_HINT = "--optimizer olive needs Olive: pip install olive-ai"


def require_olive() -> None:
    """Olive installed, and able to drive the installed onnxruntime-genai builder."""
    if importlib.util.find_spec("olive") is None:
        raise ConversionError(OLIVE_HINT)
    missing = _missing_builder_modules()
    if missing:
        raise ConversionError(f"the installed Olive ({_version('olive-ai')}) cannot drive onnxruntime-genai "
                              f"{_version('onnxruntime-genai')}: its ModelBuilder pass imports {missing[0]}, which "
                              "this onnxruntime-genai lacks; use the default --optimizer builder, or an Olive "
                              "release made for this onnxruntime-genai")


def _missing_builder_modules() -> list[str]:
    """Modules of onnxruntime_genai that Olive's ModelBuilder pass imports but that are not there."""
    import re

    spec = importlib.util.find_spec("olive.passes.onnx.model_builder")
    try:
        text = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    except OSError:
        return []
    wanted = sorted(set(re.findall(r"[\"'](onnxruntime_genai\.models(?:\.\w+)+)[\"']", text)))
    missing = []
    for module in wanted:
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            missing.append(module)
    return missing


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def olive_config(hf: Path, out: Path, cache: Path, precision: str, provider: str) -> dict[str, Any]:
    """An Olive workflow: Hugging Face folder -> ModelBuilder pass -> ONNX Runtime GenAI folder."""
    device, ep = _TARGETS[provider]
    return {
        "input_model": {"type": "HfModel", "model_path": str(hf)},
        "systems": {"local_system": {"type": "LocalSystem",
                                     "accelerators": [{"device": device, "execution_providers": [ep]}]}},
        "passes": {"builder": {"type": "ModelBuilder", "precision": precision, "extra_options": _extra(precision)}},
        "host": "local_system",
        "target": "local_system",
        "cache_dir": str(cache),
        "output_dir": str(out),
        "log_severity_level": 3,
    }


def _extra(precision: str) -> dict[str, str]:
    """The builder options the direct route also passes: no Hub token, and for int4/int8 an
    unshared embedding (a tied asymmetric int4 embedding builds a model that does not load)."""
    extra = {"hf_token": "false"}
    if precision != "fp32":
        extra["shared_embeddings"] = "false"
    return extra


def olive_env(work: Path) -> dict[str, str]:
    """Olive's ModelBuilder keeps intermediate files in the Hub cache: point it inside ``work``."""
    return {"HF_HUB_CACHE": str(work / "hf-cache"), "OLIVE_CACHE_DIR": str(work / "olive-cache")}


def olive_command(config_path: Path) -> list[str]:
    return [sys.executable, "-m", "olive", "run", "--config", str(config_path)]


def write_config(work: Path, hf: Path, precision: str, provider: str) -> tuple[Path, Path]:
    """The config file and Olive's output folder, both under ``work``."""
    out = work / "olive-out"
    path = work / "olive.json"
    path.write_text(json.dumps(olive_config(hf, out, work / "olive-cache", precision, provider), indent=1),
                    encoding="utf-8")
    return path, out


def find_model_folder(out: Path) -> Path:
    """The folder Olive wrote the ONNX Runtime GenAI model into (the one holding genai_config.json)."""
    found = sorted(out.rglob("genai_config.json"), key=lambda p: len(p.parts))
    if not found:
        raise ConversionError("Olive finished but wrote no genai_config.json")
    return found[0].parent
