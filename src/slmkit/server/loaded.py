"""A loaded model's entry in the registry, and the file facts the registry keeps."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmkit.engine.base import Embedder
from slmkit.engine.llamacpp.metadata import GgufFacts
from slmkit.server.clock import SYSTEM_CLOCK, Clock
from slmkit.store.modelfile import Profile
from slmkit.store.template import ProfileTemplate


@dataclass(eq=False)
class LoadedModel:
    name: str
    engine: Any  # Engine | Embedder
    facts: GgufFacts
    path: Path
    memory_bytes: int
    loaded_at: float  # epoch seconds
    load_seconds: float
    keep_alive: float = 300.0
    deadline: float | None = None  # monotonic; None: forever
    clock: Clock = SYSTEM_CLOCK
    last_used: float = field(default=0.0)
    profile: Profile | None = None  # Modelfile defaults (SYSTEM, MESSAGE, PARAMETER)
    template: ProfileTemplate | None = None  # the profile's TEMPLATE, compiled

    @property
    def kind(self) -> str:
        return "embedding" if self.facts.is_embedding else "chat"

    @property
    def failure(self) -> str | None:
        """Why the engine stopped working (e.g. its scheduler thread died), else None."""
        return getattr(self.engine, "failure", None)

    def busy(self) -> bool:
        stats = self.engine.stats()
        return bool(stats.get("running", 0) or stats.get("waiting", 0) or getattr(self.engine, "in_use", False))

    def touch(self, keep_alive: float) -> None:
        now = self.clock.monotonic()
        self.last_used = now
        self.keep_alive = keep_alive
        self.deadline = None if keep_alive < 0 else now + keep_alive

    def expires_at(self) -> float | None:
        """Epoch seconds at which the model unloads if it stays idle; None: never."""
        if self.deadline is None:
            return None
        return self.clock.time() + max(0.0, self.deadline - self.clock.monotonic())


def profile_template(engine: Any, profile: Profile | None) -> ProfileTemplate | None:
    if profile is None or not profile.template or isinstance(engine, Embedder):
        return None
    return ProfileTemplate(profile.template, bos_token=engine.template.bos_token, eos_token=engine.template.eos_token)


def sha256_of(path: Path) -> str:
    if path.is_dir():  # a model folder: hash its files in name order
        digest = hashlib.sha256()
        for file in sorted(f for f in path.rglob("*") if f.is_file()):
            digest.update(file.relative_to(path).as_posix().encode())
            digest.update(sha256_of(file).encode())
        return digest.hexdigest()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
