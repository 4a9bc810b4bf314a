"""``slm convert SRC --to gguf``: a Hugging Face folder (local, or ``hf.co/OWNER/REPO`` fetched
through the store's Hub client) -> a GGUF model in the store, written with the ``gguf`` library.

Llama-family causal LMs (``hf_gguf``) and BERT-family embedders (``bert_gguf``). The file is
written under the store's ``tmp/``, checked by loading its vocabulary with llama.cpp, then moved
into ``blobs/`` and registered; any failure or interruption removes it and registers nothing.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from slmkit.convert.gguf_tensors import OUTTYPES
from slmkit.convert.hf_gguf import CAUSAL_ARCHITECTURES, read_config, write_causal_gguf
from slmkit.errors import ConversionError, InvalidRequest, SlmkitError
from slmkit.store.names import parse_ref
from slmkit.store.store import Manifest, Store, sha256_file

EMBEDDING_ARCHITECTURES = ("BertModel",)
SUPPORTED = tuple(sorted((*CAUSAL_ARCHITECTURES, *EMBEDDING_ARCHITECTURES)))
_HUB = re.compile(r"^(?:https?://)?(?:hf\.co|huggingface\.co)/([A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)/?$")
# what a conversion reads from a Hub repository (never the other formats' weights)
_HUB_FILES = re.compile(r"^(?:[^/]+\.safetensors|model\.safetensors\.index\.json|config\.json|tokenizer\.json|"
                        r"tokenizer_config\.json|special_tokens_map\.json|chat_template\.(?:jinja|json)|"
                        r"generation_config\.json|vocab\.txt|sentence_bert_config\.json|modules\.json|"
                        r"1_Pooling/config\.json)$")
Step = Callable[[str], None]


@dataclass
class GgufReport:
    source: str
    name: str
    outtype: str
    architecture: str
    gguf_architecture: str
    tensors: int
    size: int
    seconds: float
    digest: str
    path: str
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def convert_to_gguf(store: Store, source: str, outtype: str = "f16", *, name: str | None = None,
                    step: Step | None = None) -> GgufReport:
    """Convert ``source`` and register it; nothing is registered when any step fails."""
    if outtype not in OUTTYPES:
        raise InvalidRequest(f"unknown output type '{outtype}'; choose one of {', '.join(OUTTYPES)}", param="outtype")
    started = time.perf_counter()
    work = store.temp_dir("convert-")
    try:
        folder, label = _source_folder(store, source, work, step)
        config = read_config(folder)
        architecture = _architecture(config)
        ref = parse_ref(name or f"{_default_name(label)}:{outtype}")
        out = work / "model.gguf"
        _say(step, f"writing {architecture} as {outtype} GGUF")
        if architecture in EMBEDDING_ARCHITECTURES:
            from slmkit.convert.bert_gguf import write_bert_gguf

            count, gguf_arch = write_bert_gguf(folder, out, name=ref.name, outtype=outtype), "bert"
        else:
            count = write_causal_gguf(folder, out, config, name=ref.name, outtype=outtype, step=step)
            gguf_arch = CAUSAL_ARCHITECTURES[architecture][0]
        _say(step, "checking that llama.cpp reads it")
        _check_loads(out)
        digest, size = f"sha256:{sha256_file(out)}", out.stat().st_size
        blob = store.commit_blob(out, digest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    store.write_manifest(Manifest(name=ref.name, tag=ref.tag, digest=digest, size=size,
                                  file_name=f"{ref.name}-{outtype}.gguf",
                                  source={"kind": "convert", "from": label, "to": "gguf", "outtype": outtype,
                                          "architecture": architecture}))
    return GgufReport(source=label, name=str(ref), outtype=outtype, architecture=architecture,
                      gguf_architecture=gguf_arch, tensors=count, size=size,
                      seconds=round(time.perf_counter() - started, 2), digest=digest, path=str(blob))


def _source_folder(store: Store, source: str, work: Path, step: Step | None) -> tuple[Path, str]:
    """(the folder to read, the source's name): a local folder, or a Hub repo fetched into ``work``."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve(), path.resolve().name
    match = _HUB.match(source.strip())
    if match:
        from slmkit.store import hub

        repo = match.group(1)
        _say(step, f"fetching {repo} from the Hub")
        folder = work / "hf"
        hub.download_folder(repo, folder, lambda p: bool(_HUB_FILES.match(p)))
        return folder, repo
    from slmkit.store.resolve import _resolve

    try:
        resolved = _resolve(source, store.home)
    except SlmkitError:  # not a model we know
        resolved = None
    if resolved is not None:
        how = "use `slm quantize` to change its precision" if resolved.format == "gguf" else "it cannot go back"
        raise ConversionError(f"{resolved.name} is already a model in {resolved.format} format; {how}")
    raise ConversionError(f"{source} is not a Hugging Face model folder nor hf.co/OWNER/REPO")


def _architecture(config: dict[str, Any]) -> str:
    archs = config.get("architectures") or []
    if config.get("model_type") == "bert" and (not archs or archs[0] in EMBEDDING_ARCHITECTURES):
        return "BertModel"
    if archs and archs[0] in CAUSAL_ARCHITECTURES:
        return str(archs[0])
    found = ", ".join(archs) or str(config.get("model_type", "unknown"))
    raise ConversionError(f"cannot convert the architecture {found} to GGUF; supported: {', '.join(SUPPORTED)}")


def _default_name(label: str) -> str:
    base = label.rsplit("/", 1)[-1].lower()
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", base).strip("-._")
    return cleaned[:80] or "converted"


def _check_loads(path: Path) -> None:
    """llama.cpp must accept the header, the hyperparameters and the vocabulary."""
    from slmkit.engine.llamacpp.bindings import Model
    from slmkit.errors import ModelLoadError

    try:
        model = Model(path, vocab_only=True)
    except ModelLoadError as exc:
        raise ConversionError(f"llama.cpp cannot load the converted file: {exc}") from exc
    model.close()


def _say(step: Step | None, message: str) -> None:
    if step is not None:
        step(message)
