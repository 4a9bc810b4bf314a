"""In-process MLX bench: prompt processing (pp) and generation (tg) tokens/s at batch sizes 1..N
straight on mlx-lm's model with a batched KV cache, without HTTP or the scheduler: the same table
as the llama.cpp engine bench (``engine_bench``), so the two engines compare on one machine."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from slmkit.bench.engine_bench import EngineBench, EngineBenchConfig
from slmkit.engine.mlx.runtime import fit_to_device, mlx_lm, mx, read_mlx_config


class MlxEngineBench(EngineBench):
    """``EngineBench.run`` over an MLX model: one cache row per batch member, greedy decoding."""

    def __init__(self, path: Path, config: EngineBenchConfig) -> None:
        lm = mlx_lm()
        read_mlx_config(path)
        self.config = config
        self.mlx_model: Any
        self.mlx_model, wrapper = lm.load(str(path))
        fit_to_device(self.mlx_model)
        text = "The quick brown fox jumps over the lazy dog while the river runs to the sea. " * 64
        filler = [int(t) for t in wrapper._tokenizer.encode(text, add_special_tokens=False)]
        self.tokens = (filler * (1 + config.prompt_tokens // len(filler)))[:config.prompt_tokens]
        self.cache: list[Any] = []
        self.last: Any = None

    def close(self) -> None:
        self.mlx_model = None
        self.cache = []

    def prompt_processing(self, n_seq: int) -> float:
        """Seconds to read ``n_seq`` prompts as one batch into a fresh cache."""
        from mlx_lm.models.cache import make_prompt_cache

        core = mx()
        self.cache = make_prompt_cache(self.mlx_model)
        start = time.perf_counter()
        logits = self.mlx_model(core.array([self.tokens] * n_seq), cache=self.cache)
        self.last = core.argmax(logits[:, -1:, :], axis=-1)
        core.eval(self.last, [c.state for c in self.cache])
        return time.perf_counter() - start

    def generation(self, n_seq: int) -> float:
        """Seconds for ``gen_tokens`` steps of one token per sequence (after the prompts)."""
        core = mx()
        start = time.perf_counter()
        for _ in range(self.config.gen_tokens):
            logits = self.mlx_model(self.last, cache=self.cache)
            self.last = core.argmax(logits[:, -1:, :], axis=-1)
            core.eval(self.last)
        return time.perf_counter() - start
