"""The models a server has loaded, by the name clients use."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from slmkit.engine.base import Engine
from slmkit.engine.llamacpp.engine import LlamaCppEngine
from slmkit.errors import ModelNotFound
from slmkit.settings import EngineSettings, Settings
from slmkit.store.modelfile import Profile
from slmkit.store.resolve import resolve_model
from slmkit.store.template import ProfileTemplate

log = logging.getLogger("slmkit.server")


def load_engine(name: str, path: Path, fmt: str, settings: EngineSettings) -> Engine:
    """The engine for a model's format: llama.cpp for GGUF, onnxruntime-genai for ONNX."""
    if fmt == "onnx":
        from slmkit.engine.onnx.engine import OnnxEngine

        return OnnxEngine(name, path, settings)
    return LlamaCppEngine(name, path, settings)


class ModelRegistry:
    """Loads the configured models and hands out their engines."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[str, Engine] = {}
        self._loaded_at: dict[str, int] = {}
        self._profiles: dict[str, Profile] = {}
        self._templates: dict[str, ProfileTemplate] = {}
        self.default: str | None = None

    def load_configured(self) -> None:
        for spec in self.settings.server.models:
            resolved = resolve_model(spec, self.settings.store.home)
            if resolved.name in self._engines:
                continue
            started = time.perf_counter()
            engine_settings = self.settings.engine
            if resolved.profile is not None and resolved.profile.num_ctx:
                engine_settings = engine_settings.model_copy(update={"ctx_size": resolved.profile.num_ctx})
            engine = load_engine(resolved.name, resolved.path, resolved.format, engine_settings)
            self._engines[resolved.name] = engine
            if resolved.profile is not None:
                self._add_profile(engine, resolved.profile)
            self._loaded_at[resolved.name] = int(time.time())
            log.info("loaded %s from %s in %.2fs", resolved.name, resolved.path, time.perf_counter() - started)
            self.default = self.default or resolved.name

    def get(self, name: str | None) -> Engine:
        key = (name or self.default or "").lower()
        engine = self._engines.get(key)
        if engine is None:
            raise ModelNotFound(f"The model '{name}' does not exist", param="model")
        return engine

    def _add_profile(self, engine: Engine, profile: Profile) -> None:
        self._profiles[engine.name] = profile
        template = getattr(engine, "template", None)
        if profile.template and template is not None:
            self._templates[engine.name] = ProfileTemplate(profile.template, bos_token=template.bos_token,
                                                           eos_token=template.eos_token)

    def profile(self, name: str) -> Profile | None:
        """The Modelfile defaults the model was created with, if any."""
        return self._profiles.get(name)

    def profile_template(self, name: str) -> ProfileTemplate | None:
        return self._templates.get(name)

    def names(self) -> list[str]:
        return list(self._engines)

    def loaded_at(self, name: str) -> int:
        return self._loaded_at[name]

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
