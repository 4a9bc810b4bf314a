"""``slmkit.load``: settings for one model in this process, and the caller it acts for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from slmkit.api.model import LOCAL, Model
from slmkit.errors import InvalidRequest
from slmkit.server.auth import KeyStore
from slmkit.settings import EngineSettings, load_settings

ENGINE_OPTIONS = frozenset(EngineSettings.model_fields)


def load(name: str | None = None, *, home: str | Path | None = None, api_key: str | None = None,
         **engine_options: Any) -> Model:
    """Load a model into this process and return it.

    ``name`` is what ``slm serve --model`` takes: an embedded model (default: the embedded
    SmolLM2-135M-Instruct), a store name or alias, a Modelfile profile, or a path to a GGUF
    file or an ONNX folder. ``engine_options`` are the engine settings (``parallel``,
    ``ctx_size``, ``threads``, ``batch_size``, ``max_queue``, ``prefill_chunk``,
    ``context_overflow``); ``home`` the store (default ``$SLM_HOME`` or ``~/.slmkit``).
    ``api_key``: act as that key of the store (its model scope applies, as on the server);
    without one the caller is the store's owner.
    Raises ``ModelNotFound``, ``ModelLoadError`` or ``InvalidRequest`` (bad options).
    """
    unknown = sorted(set(engine_options) - ENGINE_OPTIONS)
    if unknown:
        raise InvalidRequest(f"unknown engine option {unknown[0]!r}; the options are: "
                             f"{', '.join(sorted(ENGINE_OPTIONS))}", param=unknown[0])
    overrides: dict[str, Any] = {f"engine__{k}": v for k, v in engine_options.items()}
    if name is not None:
        overrides["server__models"] = [str(name)]
    try:
        settings = load_settings(server__keep_alive=-1, store__home=home, **overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidRequest(f"{error['loc'][-1]}: {error['msg']}", param=str(error["loc"][-1])) from None
    principal = KeyStore(settings.keys_db).verify(api_key) if api_key is not None else LOCAL
    return Model(settings, principal)
