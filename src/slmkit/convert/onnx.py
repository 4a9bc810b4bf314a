"""``slm convert --to onnx``: a store GGUF or a Hugging Face folder -> an ONNX Runtime GenAI
model in the store (format ``onnx``), through onnxruntime-genai's model builder.

Route (see docs/models.md): GGUF -> fp32 Hugging Face folder (transformers dequantizes it) ->
``onnxruntime_genai.models.builder`` -> model.onnx + genai_config.json + tokenizer. Both steps
run as child processes inside a folder under the store's ``tmp/``; the folder is moved into
``blobs/`` only once the result loads, and removed on any failure or interruption.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmkit.convert import olive
from slmkit.errors import ConversionError, InvalidRequest
from slmkit.install import install_command
from slmkit.store.names import parse_ref
from slmkit.store.resolve import resolve_model
from slmkit.store.store import Manifest, Store

PRECISIONS = ("int4", "int8", "fp32")
ALGOS = ("default", "k_quant")
CONVERT_HINT = "converting to ONNX needs torch, transformers and onnxruntime-genai: " + install_command("convert")
# Hugging Face architectures the builder of onnxruntime-genai 0.18 exports; the installed
# builder's own list (read from its source) is used when it can be read.
BUILDER_ARCHITECTURES = frozenset({
    "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM", "Phi3ForCausalLM",
    "PhiForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "Gemma3ForCausalLM", "Gemma3ForConditionalGeneration",
    "GraniteForCausalLM", "OlmoForCausalLM", "ChatGLMForConditionalGeneration", "NemotronForCausalLM",
    "SmolLM3ForCausalLM", "ErnieForCausalLM", "GptOssForCausalLM", "Phi3VForCausalLM", "PhiMoEForCausalLM",
    "Phi4MMForCausalLM", "Qwen2_5_VLForConditionalGeneration",
})
Step = Callable[[str], None]


@dataclass
class ConvertReport:
    source: str
    name: str
    precision: str
    algo: str
    source_format: str
    source_bits: float | None  # bits per weight of a GGUF source
    size: int
    seconds: float
    digest: str
    path: str
    warnings: list[str] = field(default_factory=list)
    optimizer: str = "builder"
    provider: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Source:
    name: str
    kind: str  # "gguf" or "hf"
    path: Path
    bits: float | None = None


def convert_to_onnx(store: Store, source: str, precision: str, *, algo: str = "default", name: str | None = None,
                    threads: int | None = None, optimizer: str = "builder", provider: str = "cpu",
                    step: Step | None = None, warn: Step | None = None) -> ConvertReport:
    """Convert ``source`` and register it; nothing is registered when any step fails. ``warn``
    hears the warnings (requantizing a quantized source...) before the work starts."""
    _check_options(precision, algo, optimizer, provider)
    src = _source(store, source)
    _require_extra()
    if optimizer == "olive":
        olive.require_olive()
    suffix = ("-kq" if algo == "k_quant" else "") + ("" if optimizer == "builder" else f"-olive-{provider}")
    ref = parse_ref(name or f"{src.name.partition(':')[0]}:onnx-{precision}{suffix}")
    warnings = _warnings(src, precision)
    if provider != "cpu":
        warnings.append(f"built for the {provider} execution provider, which slmkit has not tested and this "
                        "machine does not check: the result is registered without a load test")
    if warn is not None:
        for warning in warnings:
            warn(warning)
    started = time.perf_counter()
    work = store.temp_dir("convert-")
    try:
        hf = src.path
        if src.kind == "gguf":
            _say(step, "dequantizing the GGUF with transformers")
            hf = work / "hf"
            _child([sys.executable, "-m", "slmkit.convert.hf_from_gguf", str(src.path), str(hf)], threads,
                   "reading the GGUF with transformers")
        _check_architecture(hf)
        out = _build(hf, work, precision, algo, optimizer, provider, threads, step)
        _finish_folder(hf, out)
        if provider == "cpu":
            _say(step, "checking that onnxruntime-genai loads it")
            _check_loads(out)
        digest, size = store.add_folder(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    store.write_manifest(Manifest(name=ref.name, tag=ref.tag, digest=digest, size=size, format="onnx",
                                  file_name=f"{ref.name}-onnx-{precision}",
                                  source={"kind": "convert", "from": src.name, "to": "onnx",
                                          "precision": precision, "algo": algo, "source_bits": src.bits,
                                          "optimizer": optimizer, "execution_provider": provider}))
    return ConvertReport(source=src.name, name=str(ref), precision=precision,
                         algo=algo, source_format=src.kind, source_bits=src.bits, size=size,
                         seconds=round(seconds, 2), digest=digest, path=str(store.blob_path(digest)),
                         warnings=warnings)


def _build(hf: Path, work: Path, precision: str, algo: str, optimizer: str, provider: str, threads: int | None,
           step: Step | None) -> Path:
    """Run the builder (or Olive's workflow around it); the folder holding the ONNX model."""
    if optimizer == "olive":
        _say(step, f"running Olive's ModelBuilder workflow ({precision}, {provider})")
        config, out = olive.write_config(work, hf, precision, provider)
        _child(olive.olive_command(config), threads, "Olive", env=olive.olive_env(work))
        return olive.find_model_folder(out)
    out = work / "onnx"
    _say(step, f"building the {precision} ONNX model")
    _child(_builder_command(hf, out, work / "cache", precision, algo), threads, "the onnxruntime-genai builder")
    return out


def _check_options(precision: str, algo: str, optimizer: str = "builder", provider: str = "cpu") -> None:
    if precision not in PRECISIONS:
        raise InvalidRequest(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}",
                             param="precision")
    if algo not in ALGOS:
        raise InvalidRequest(f"unknown algorithm '{algo}'; choose one of {', '.join(ALGOS)}", param="algo")
    if algo != "default" and precision == "fp32":
        raise InvalidRequest("--algo applies to int4 and int8 only", param="algo")
    if optimizer not in olive.OPTIMIZERS:
        raise InvalidRequest(f"unknown optimizer '{optimizer}'; choose one of {', '.join(olive.OPTIMIZERS)}",
                             param="optimizer")
    if provider not in olive.EXECUTION_PROVIDERS:
        raise InvalidRequest(f"unknown execution provider '{provider}'; choose one of "
                             f"{', '.join(olive.EXECUTION_PROVIDERS)}", param="execution_provider")
    if provider != "cpu" and optimizer != "olive":
        raise InvalidRequest("an execution provider other than cpu needs --optimizer olive", param="execution_provider")
    if optimizer == "olive" and algo != "default":
        raise InvalidRequest("--algo applies to the builder only; Olive picks its own", param="algo")


def _source(store: Store, spec: str) -> _Source:
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConversionError(f"{spec} is not a Hugging Face model folder: it has no config.json")
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            raise ConversionError(f"{spec} has no weights (*.safetensors)")
        return _Source(name=path.resolve().name.lower(), kind="hf", path=path.resolve())
    resolved = resolve_model(spec, store.home)
    if resolved.format != "gguf":
        raise ConversionError(f"{resolved.name} is already an {resolved.format} model")
    from slmkit.store.gguf_meta import read_gguf

    info = read_gguf(resolved.path)
    bits = round(info.tensor_bytes * 8 / info.parameters(), 2) if info.parameters() else None
    return _Source(name=resolved.name, kind="gguf", path=resolved.path, bits=bits)


def _require_extra() -> None:
    import importlib.util

    missing = [m for m in ("torch", "transformers", "onnxruntime_genai", "onnx") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConversionError(f"{CONVERT_HINT} (missing: {', '.join(missing)})")


def _warnings(src: _Source, precision: str) -> list[str]:
    if src.bits is None or src.bits >= 8:
        return []
    return [f"the source is already quantized (~{src.bits} bits per weight): converting dequantizes it and "
            f"re-quantizes to {precision}, which costs quality (int4 perplexity rose ~33% on SmolLM2 Q4_1); "
            "check the drift with `slm eval`, or convert from the original safetensors"]


def _check_architecture(hf: Path) -> None:
    try:
        config = json.loads((hf / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot read {hf / 'config.json'}: {exc}") from exc
    archs = config.get("architectures") or []
    supported = builder_architectures()
    if not archs or archs[0] not in supported:
        raise ConversionError(f"the onnxruntime-genai builder cannot export the architecture "
                              f"{', '.join(archs) or config.get('model_type', 'unknown')}; supported: "
                              f"{', '.join(sorted(supported))}")


def builder_architectures() -> frozenset[str]:
    """The architectures the installed builder dispatches on (``config.architectures[0] == "X"``)."""
    import importlib.util
    import re

    try:
        spec = importlib.util.find_spec("onnxruntime_genai.models.builder")
        text = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    except (ImportError, OSError):
        text = ""
    found = frozenset(re.findall(r'architectures\[0\] == "(\w+)"', text))
    return found or BUILDER_ARCHITECTURES


def _builder_command(hf: Path, out: Path, cache: Path, precision: str, algo: str) -> list[str]:
    extra = ["hf_token=false"]
    if precision != "fp32":
        # asymmetric int4 with a shared (tied) embedding builds a model that does not load
        extra += ["algo_config=k_quant"] if algo == "k_quant" else ["shared_embeddings=false"]
    return [sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(hf), "-o", str(out),
            "-p", precision, "-e", "cpu", "-c", str(cache), "--extra_options", *extra]


def _child(command: list[str], threads: int | None, what: str, env: dict[str, str] | None = None) -> None:
    """Run one conversion step; its output is shown only when it fails. An interruption
    (Ctrl-C) kills it and propagates."""
    child_env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", **(env or {})}
    if threads:
        child_env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    proc = subprocess.Popen(command, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        lines = [line for line in output.strip().splitlines() if line.strip()]
        raise ConversionError(f"{what} failed: {lines[-1] if lines else f'exit code {proc.returncode}'}")


def _finish_folder(hf: Path, out: Path) -> None:
    """Make the folder self-contained: tokenizer files and chat template next to the model."""
    if not (out / "genai_config.json").is_file():
        raise ConversionError("the builder wrote no genai_config.json")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "generation_config.json"):
        if (hf / name).is_file() and not (out / name).is_file():
            shutil.copy2(hf / name, out / name)
    if not (out / "tokenizer.json").is_file():
        raise ConversionError("the converted model has no tokenizer.json")


def _check_loads(out: Path) -> None:
    """Load the result in a child process (the precision must run on this execution provider)."""
    code = ("import sys, onnxruntime_genai as og; m = og.Model(sys.argv[1]); t = og.Tokenizer(m); "
            "assert len(t.encode('hello')) > 0")
    _child([sys.executable, "-c", code, str(out)], None, "loading the converted model")


def _say(step: Step | None, message: str) -> None:
    if step is not None:
        step(message)
