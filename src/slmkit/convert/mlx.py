"""``slm convert --to mlx``: a store GGUF, a Hugging Face folder or ``hf.co/OWNER/REPO`` -> an MLX
model in the store (format ``mlx``), quantized by mlx-lm's converter (affine, 4 or 8 bits in
groups of ``group_size``, or float16).

Route (see docs/models.md): GGUF -> fp32 Hugging Face folder (transformers dequantizes it, as for
ONNX) -> ``mlx_lm.convert`` -> model.safetensors + config.json + tokenizer + chat template. Every
step runs under a folder in the store's ``tmp/`` (the converter as a child process); the folder is
moved into ``blobs/`` only once the result loads, and removed on any failure or interruption.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmkit.convert.onnx import Step, _child, _say
from slmkit.convert.to_gguf import _HUB, _HUB_FILES, _default_name
from slmkit.engine.mlx.runtime import package_version
from slmkit.errors import ConversionError, InvalidRequest, SlmkitError
from slmkit.store.names import parse_ref
from slmkit.store.store import Manifest, Store

QUANTS = {"q4": 4, "q8": 8, "f16": 0}  # bits of the affine quantization; 0: float16, unquantized
GROUP_SIZES = (32, 64, 128)
MLX_HINT = "converting to MLX needs mlx and mlx-lm: pip install 'slmkit[mlx]'"
GGUF_HINT = "converting a GGUF to MLX also needs torch and transformers to read it: pip install 'slmkit[convert]'"
# perplexity / the Q4_1 GGUF's, measured on SmolLM2 135M (docs/models.md)
MEASURED_RATIO = {"q4": "1.23x", "q8": "0.99x"}


@dataclass
class MlxReport:
    source: str
    name: str
    quant: str
    group_size: int
    source_format: str  # gguf, hf or hub
    source_bits: float | None  # bits per weight of a GGUF source
    size: int
    seconds: float
    digest: str
    path: str
    drift_check: str  # the command that measures what the conversion cost
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Source:
    name: str
    kind: str  # "gguf", "hf" or "hub"
    path: Path | None  # None for a Hub repository (fetched into the work folder)
    bits: float | None = None
    repo: str = ""


def convert_to_mlx(store: Store, source: str, quant: str = "q4", *, group_size: int = 64, name: str | None = None,
                   threads: int | None = None, step: Step | None = None) -> MlxReport:
    """Convert ``source`` and register it; nothing is registered when any step fails."""
    check_options(quant, group_size)
    src = _source(store, source)
    require_extra(gguf=src.kind == "gguf")
    ref = parse_ref(name or f"{_base_name(src)}:mlx-{quant}")
    started = time.perf_counter()
    work = store.temp_dir("convert-")
    try:
        hf = _hf_folder(src, work, threads, step)
        check_family(hf)
        out = work / "mlx"
        _say(step, f"converting to MLX {quant}" + (f" (groups of {group_size})" if QUANTS[quant] else ""))
        _child([sys.executable, "-m", "slmkit.convert.mlx_child", str(hf), str(out), str(QUANTS[quant]),
                str(group_size)], threads, "the mlx-lm converter")
        _finish_folder(hf, out)
        digest, size = store.add_folder(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    store.write_manifest(Manifest(name=ref.name, tag=ref.tag, digest=digest, size=size, format="mlx",
                                  file_name=f"{ref.name}-mlx-{quant}",
                                  source={"kind": "convert", "from": src.name, "to": "mlx", "quant": quant,
                                          "bits": QUANTS[quant] or 16, "group_size": group_size,
                                          "source_bits": src.bits, "mlx_lm": package_version("mlx-lm")}))
    check = f"slm eval {src.name} {ref} --no-tasks" if src.kind == "gguf" else f"slm eval {ref} --no-tasks"
    return MlxReport(source=src.name, name=str(ref), quant=quant, group_size=group_size, source_format=src.kind,
                     source_bits=src.bits, size=size, seconds=round(time.perf_counter() - started, 2),
                     digest=digest, path=str(store.blob_path(digest)), drift_check=check,
                     warnings=_warnings(src, quant, check))


def check_options(quant: str, group_size: int) -> None:
    if quant not in QUANTS:
        raise InvalidRequest(f"MLX has no quant type '{quant}'; choose one of {', '.join(QUANTS)} "
                             "(k-quants and the other GGUF types are llama.cpp's: see `slm quantize`)", param="quant")
    if group_size not in GROUP_SIZES:
        raise InvalidRequest(f"MLX quantizes in groups of {', '.join(map(str, GROUP_SIZES))} weights, not "
                             f"{group_size}", param="group_size")


def require_extra(*, gguf: bool) -> None:
    missing = [m for m in ("mlx", "mlx_lm") if importlib.util.find_spec(m) is None]
    if missing:
        raise ConversionError(f"{MLX_HINT} (missing: {', '.join(missing)})")
    missing = [m for m in ("torch", "transformers") if gguf and importlib.util.find_spec(m) is None]
    if missing:
        raise ConversionError(f"{GGUF_HINT} (missing: {', '.join(missing)})")


def check_family(hf: Path) -> None:
    """The folder's architecture must be one mlx-lm implements (``mlx_lm.models.<type>``)."""
    config = _read_config(hf)
    model_type = str(config.get("model_type") or "")
    archs = config.get("architectures") or []
    if not model_type or importlib.util.find_spec(f"mlx_lm.models.{_mlx_model_type(model_type, archs)}") is None:
        found = ", ".join(archs) or model_type or "unknown"
        raise ConversionError(f"mlx-lm cannot convert the model family {found} (model_type "
                              f"'{model_type or '?'}'): it has no mlx_lm.models.{model_type or '?'}")


def _mlx_model_type(model_type: str, archs: list[str]) -> str:
    from mlx_lm import utils

    for arch in archs:
        remapped = getattr(utils, "MODEL_ARCHITECTURE_REMAPPING", {}).get((model_type, arch))
        if remapped:
            return str(remapped)
    return str(getattr(utils, "MODEL_REMAPPING", {}).get(model_type, model_type))


def _read_config(hf: Path) -> dict[str, Any]:
    try:
        config = json.loads((hf / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConversionError(f"cannot read {hf / 'config.json'}: {exc}") from exc
    if not isinstance(config, dict):
        raise ConversionError(f"{hf / 'config.json'} is not a JSON object")
    return config


def _source(store: Store, spec: str) -> _Source:
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConversionError(f"{spec} is not a Hugging Face model folder: it has no config.json")
        if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
            raise ConversionError(f"{spec} has no weights (*.safetensors)")
        return _Source(name=path.resolve().name.lower(), kind="hf", path=path.resolve())
    match = _HUB.match(spec.strip())
    if match:
        return _Source(name=match.group(1), kind="hub", path=None, repo=match.group(1))
    from slmkit.store.resolve import resolve_model

    try:
        resolved = resolve_model(spec, store.home)
    except SlmkitError as exc:
        raise ConversionError(f"{spec} is not a store model, a Hugging Face folder nor hf.co/OWNER/REPO "
                              f"({exc.message})") from exc
    if resolved.format != "gguf":
        raise ConversionError(f"{resolved.name} is already an {resolved.format} model")
    from slmkit.store.gguf_meta import read_gguf

    info = read_gguf(resolved.path)
    bits = round(info.tensor_bytes * 8 / info.parameters(), 2) if info.parameters() else None
    return _Source(name=resolved.name, kind="gguf", path=resolved.path, bits=bits)


def _hf_folder(src: _Source, work: Path, threads: int | None, step: Step | None) -> Path:
    """The Hugging Face folder to convert: the source's own, fetched from the Hub, or read from the GGUF."""
    if src.kind == "hf":
        assert src.path is not None
        return src.path
    hf = work / "hf"
    if src.kind == "hub":
        from slmkit.store import hub

        _say(step, f"fetching {src.repo} from the Hub")
        hub.download_folder(src.repo, hf, lambda p: bool(_HUB_FILES.match(p)))
        return hf
    _say(step, "dequantizing the GGUF with transformers")
    _child([sys.executable, "-m", "slmkit.convert.hf_from_gguf", str(src.path), str(hf)], threads,
           "reading the GGUF with transformers")
    return hf


def _finish_folder(hf: Path, out: Path) -> None:
    """Self-contained: the tokenizer and chat template next to the weights; no generated README."""
    if not (out / "config.json").is_file() or not any(out.glob("*.safetensors")):
        raise ConversionError("the mlx-lm converter wrote no config.json or weights")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                 "generation_config.json"):
        if (hf / name).is_file() and not (out / name).is_file():
            shutil.copy2(hf / name, out / name)
    (out / "README.md").unlink(missing_ok=True)
    config_path = out / "config.json"
    config_path.write_text(json.dumps(rope_for_mlx(_read_config(out)), indent=4), encoding="utf-8")


def rope_for_mlx(config: dict[str, Any]) -> dict[str, Any]:
    """transformers 5 writes the RoPE base and scaling as ``rope_parameters``; mlx-lm 0.32's models
    read ``rope_theta`` and ``rope_scaling`` and silently fall back to a base of 10000 (SmolLM2's is
    100000: greedy answers went wrong). Copy them to the keys mlx-lm reads, here and in a nested
    ``text_config``."""
    out = dict(config)
    params = out.get("rope_parameters")
    if isinstance(params, dict):
        if "rope_theta" in params and "rope_theta" not in out:
            out["rope_theta"] = params["rope_theta"]
        scaling = {k: v for k, v in params.items() if k != "rope_theta"}
        if scaling.get("rope_type", "default") != "default" and not out.get("rope_scaling"):
            out["rope_scaling"] = scaling
    if isinstance(out.get("text_config"), dict):
        out["text_config"] = rope_for_mlx(out["text_config"])
    return out


def _base_name(src: _Source) -> str:
    return src.name.partition(":")[0] if src.kind == "gguf" else _default_name(src.name)


def _warnings(src: _Source, quant: str, check: str) -> list[str]:
    if src.bits is None or src.bits >= 8:
        return []
    redo = "re-quantizes to " + quant if QUANTS[quant] else "stores it as float16 (which cannot restore what was lost)"
    measured = (f"; perplexity measured {MEASURED_RATIO[quant]} the GGUF's on SmolLM2 Q4_1"
                if quant in MEASURED_RATIO else "")
    return [f"the source is already quantized (~{src.bits} bits per weight): converting dequantizes it and "
            f"{redo}{measured}. Check the drift with `{check}`, or convert from the original safetensors"]

