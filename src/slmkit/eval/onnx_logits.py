"""The logits of every window position from an ONNX Runtime GenAI model, so that `slm eval`
scores ONNX models and their drift from the GGUF they were converted from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from slmkit.engine.onnx.runtime import genai, read_genai_config, set_threads
from slmkit.errors import EngineError


@dataclass(frozen=True)
class _Facts:
    n_vocab: int
    path: Path


class OnnxLogitSource:
    """Same interface as ``perplexity.LogitSource``: tokenize, logits(tokens), close."""

    def __init__(self, path: Path, *, window: int, threads: int) -> None:
        og = genai()
        config = og.Config(str(path))
        set_threads(config, threads)
        self._og = og
        self._model = og.Model(config)
        self._tokenizer = og.Tokenizer(self._model)
        self.model = _Facts(n_vocab=int(read_genai_config(path)["model"].get("vocab_size", 0)), path=path)

    def tokenize(self, text: str) -> list[int]:
        return [int(t) for t in self._tokenizer.encode(text)]

    def logits(self, tokens: list[int]) -> np.ndarray:
        params = self._og.GeneratorParams(self._model)
        params.set_search_options(max_length=len(tokens) + 1)
        generator = self._og.Generator(self._model, params)
        generator.append_tokens(np.asarray(tokens, dtype=np.int32))
        out = np.asarray(generator.get_output("logits"))
        if out.ndim != 3 or out.shape[1] != len(tokens):
            raise EngineError(f"onnxruntime-genai returned logits of shape {out.shape} for {len(tokens)} tokens")
        return out[0].astype(np.float32)  # type: ignore[no-any-return]

    def close(self) -> None:
        self._tokenizer = None
        self._model = None
