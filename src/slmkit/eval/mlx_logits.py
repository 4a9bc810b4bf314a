"""The logits of every window position from an MLX model, so that `slm eval` scores MLX models and
their drift from the GGUF they were converted from (the weights as the MLX engine runs them:
float32 compute on a CPU, see ``engine.mlx.runtime.fit_to_device``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.engine.mlx.runtime import fit_to_device, mlx_lm, mx, read_mlx_config
from slmkit.errors import EngineError


@dataclass(frozen=True)
class _Facts:
    n_vocab: int
    path: Path


class MlxLogitSource:
    """Same interface as ``perplexity.LogitSource``: tokenize, logits(tokens), close."""

    def __init__(self, path: Path, *, window: int, threads: int) -> None:
        lm = mlx_lm()
        config = read_mlx_config(path)
        self._model: Any
        self._model, wrapper = lm.load(str(path))
        fit_to_device(self._model)
        self._tokenizer: Any = wrapper._tokenizer
        self.model = _Facts(n_vocab=int(config.get("vocab_size") or len(self._tokenizer)), path=path)

    def tokenize(self, text: str) -> list[int]:
        return [int(t) for t in self._tokenizer.encode(text)]

    def logits(self, tokens: list[int]) -> np.ndarray:
        core = mx()
        out = self._model(core.array([tokens]))
        values = np.asarray(out[0].astype(core.float32), dtype=np.float32)
        if values.shape[0] != len(tokens):
            raise EngineError(f"mlx-lm returned logits of shape {values.shape} for {len(tokens)} tokens")
        return values[:, :self.model.n_vocab]

    def close(self) -> None:
        self._model = None
        self._tokenizer = None
