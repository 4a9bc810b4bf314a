"""The one settings tree. Environment variables use the ``SLM_`` prefix.

Nested values use a double underscore: ``SLM_ENGINE__PARALLEL=8``. A few common ones have
short aliases handled by the CLI (``--parallel`` and so on); everything is loaded here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MODEL = "smollm2-135m-instruct"


def _default_home() -> Path:
    return Path(os.environ.get("SLM_HOME", Path.home() / ".slmkit")).expanduser()


class EngineSettings(BaseModel):
    """How each loaded model's engine runs."""

    parallel: int = Field(4, ge=1, le=256, description="Slots: sequences decoded together.")
    ctx_size: int = Field(2048, ge=64, description="Context length of each slot, in tokens.")
    threads: int | None = Field(None, ge=1, description="CPU threads; default: the physical cores.")
    batch_size: int = Field(512, ge=16, description="Most tokens in one decode step.")
    max_queue: int = Field(64, ge=0, description="Requests that may wait for a slot.")
    prefill_chunk: int = Field(256, ge=1, description="Most prompt tokens read in one step (chunked prefill).")
    batch_wait_ms: float = Field(20.0, ge=0, le=10_000, description="Unused since the ONNX engine batches "
                                 "continuously (kept so that old settings still load).")
    context_overflow: Literal["error", "truncate"] = "error"
    prompt_cache_mib: int | None = Field(None, ge=0, description="Host memory for the KV states of prompts no "
                                         "slot holds any more (like llama-server's --cache-ram), MiB; 0: off; "
                                         "unset: a quarter of the memory available at load, at most 8 GiB.")
    cache_type_k: Literal["f16", "q8_0", "q4_0"] = Field("f16", description="KV cache type of keys (llama.cpp "
                                                         "engine); q8_0 halves the KV memory, q4_0 quarters it.")
    cache_type_v: Literal["f16", "q8_0", "q4_0"] = Field("f16", description="KV cache type of values.")
    speculative: Literal["ngram", "off"] = Field("off", description="llama.cpp engine: prompt-lookup (n-gram) "
                                                 "speculative decoding, adaptive per sequence; off: none (the "
                                                 "default until a side-by-side benchmark shows it pays).")
    grammar_max_repeat: int = Field(1000, ge=1, le=4000, description="JSON schemas: the largest minItems, maxItems, "
                                    "minLength, maxLength (or {n} in a pattern) a grammar may be built for.")
    grammar_max_enum: int = Field(256, ge=1, description="JSON schemas: most values in one enum (each costs "
                                  "sampling time at every step where it may start).")
    grammar_max_depth: int = Field(64, ge=1, le=200, description="JSON schemas: deepest nesting of the schema "
                                   "document (each object or array level counts).")
    grammar_max_bytes: int = Field(256 * 1024, ge=1024, description="Largest JSON schema, and largest grammar "
                                   "built from one, in bytes.")
    grammar_timeout_s: float = Field(5.0, gt=0, le=600, description="Most seconds turning one JSON schema "
                                     "into a grammar may take.")
    parse_special_in_content: bool = Field(False, description="Read special-token text written in message "
                                           "contents (<|im_start|> ...) as control tokens (the old behaviour); "
                                           "off: only the chat template's own markup is special, as "
                                           "llama-server does.")

    def n_threads(self) -> int:
        """``threads``, else the physical cores (SMT siblings only slow llama.cpp's decode down)."""
        from slmkit.catalog.hardware import physical_cores

        return self.threads or physical_cores()


class StoreSettings(BaseModel):
    """Where models live."""

    home: Path = Field(default_factory=_default_home)


class ServerSettings(BaseModel):
    """The HTTP server."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    models: list[str] = Field(default_factory=lambda: [DEFAULT_MODEL])
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, description="Largest request body (413 beyond).")
    max_batch_body_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Largest body of an embedding "
                                      "batch (/api/embed, /v1/embeddings).")
    max_blob_bytes: int = Field(16 * 1024**3, ge=1024, description="Largest model file one POST /api/blobs "
                                "upload may hold (ollama create with files).")
    max_tokens_cap: int = Field(32768, ge=1)
    max_n: int = Field(8, ge=1)
    keep_alive: float = Field(300.0, description="Seconds an idle model stays loaded; negative: forever.")
    max_loaded_models: int = Field(3, ge=1, description="Loaded models before the least recently used goes.")
    max_memory_bytes: int | None = Field(None, ge=1, description="Budget for loaded models (weights + KV).")
    max_prompt_tokens: int = Field(131072, ge=1, description="Most tokens one prompt may have.")
    max_messages: int = Field(1024, ge=1, description="Most messages in one chat request.")
    max_stop: int = Field(16, ge=0, description="Most stop strings in one request.")
    max_prompts: int = Field(64, ge=1, description="Most prompts in one text-completion request.")
    drain_timeout: float = Field(30.0, ge=0, description="Seconds running requests get after SIGTERM.")
    max_header_bytes: int = Field(64 * 1024, ge=1024, description="Most bytes of request headers (names and "
                                  "values together); more: 431.")


class ResponsesSettings(BaseModel):
    """Stored responses of the OpenAI Responses API (``store: true``, the default there)."""

    max_count: int = Field(10_000, ge=0, description="Most stored responses (all keys together); the oldest "
                           "go first. 0: nothing is stored.")
    max_age_s: float = Field(30 * 86400, gt=0, description="Seconds a stored response is kept (OpenAI: 30 days).")


class SecuritySettings(BaseModel):
    """Keys, limits, TLS, CORS and the audit log."""

    api_key: SecretStr | None = Field(None, description="One static key (also SLM_API_KEY).")
    metrics_public: bool = False
    cors_origins: list[str] = Field(default_factory=list)
    allowed_hosts: list[str] = Field(default_factory=list, description="Host header names served besides IP "
                                     "addresses and localhost (DNS-rebinding guard); '*': any. Empty: only those "
                                     "when bound to loopback, any when bound beyond it.")
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    max_concurrent_per_key: int | None = Field(None, ge=1)
    audit_log: Path | None = None
    audit_max_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    audit_backups: int = Field(5, ge=0)
    log_content: bool = False


class Settings(BaseSettings):
    """Root of the settings tree."""

    model_config = SettingsConfigDict(env_prefix="SLM_", env_nested_delimiter="__", extra="ignore")

    server: ServerSettings = ServerSettings()
    engine: EngineSettings = EngineSettings()
    store: StoreSettings = Field(default_factory=StoreSettings)  # SLM_HOME read at load, not import
    security: SecuritySettings = SecuritySettings()
    responses: ResponsesSettings = ResponsesSettings()
    log_level: str = "info"

    @model_validator(mode="after")
    def _short_api_key_variable(self) -> Settings:
        """``SLM_API_KEY`` works as well as ``SLM_SECURITY__API_KEY``, as llama-server and vLLM users expect."""
        if self.security.api_key is None and os.environ.get("SLM_API_KEY"):
            self.security.api_key = SecretStr(os.environ["SLM_API_KEY"])
        return self

    @property
    def keys_db(self) -> Path:
        return self.store.home / "keys.sqlite"

    @property
    def responses_db(self) -> Path:
        return self.store.home / "responses.sqlite"


def load_settings(**overrides: object) -> Settings:
    """Load settings from the environment; keyword overrides such as ``engine__parallel=8``
    (double underscore between section and key) win over it. ``None`` values are ignored."""
    tree: dict[str, object] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, nested, key = dotted.partition("__")
        if not nested:  # a top-level setting such as log_level
            tree[section] = value
            continue
        branch = tree.setdefault(section, {})
        assert isinstance(branch, dict)
        branch[key] = value
    return Settings(**tree)  # type: ignore[arg-type]
