"""In-process engine bench: prompt processing (pp) and generation (tg) tokens/s at batch sizes
1..N straight on llama.cpp, without HTTP, like llama-bench and batched-bench. The gap between
these figures and `slm bench` over HTTP is the server's overhead."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.engine.llamacpp.bindings import Batch, Context, Model
from slmkit.errors import EngineError

SCHEMA = "slmkit.engine-bench/1"


@dataclass
class EngineBenchConfig:
    batch_sizes: list[int]
    prompt_tokens: int = 128
    gen_tokens: int = 32
    repeats: int = 3
    threads: int = 2
    n_batch: int = 512


class EngineBench:
    """One context with a KV sequence per batch member; filler tokens from the model's own
    vocabulary (what is decoded does not change the cost of decoding it)."""

    def __init__(self, path: Path, config: EngineBenchConfig) -> None:
        self.config = config
        self.model = Model(path)
        try:
            self.ctx = Context(self.model, n_seq=max(config.batch_sizes),
                               ctx_per_seq=config.prompt_tokens + config.gen_tokens + 8,
                               n_batch=config.n_batch, threads=config.threads)
        except Exception:
            self.model.close()
            raise
        self.batch = Batch(max(config.n_batch, max(config.batch_sizes)))
        text = "The quick brown fox jumps over the lazy dog while the river runs to the sea. " * 64
        filler = self.model.tokenize(text, add_special=False, parse_special=False)
        self.tokens = (filler * (1 + config.prompt_tokens // len(filler)))[:config.prompt_tokens]

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self.model.close()

    def _decode(self) -> None:
        if self.ctx.decode(self.batch) != 0:
            raise EngineError("llama_decode failed during the engine bench")
        self.batch.clear()

    def _clear(self, n_seq: int) -> None:
        for seq in range(n_seq):
            self.ctx.seq_rm(seq, 0, -1)

    def prompt_processing(self, n_seq: int) -> float:
        """Seconds to read ``n_seq`` prompts, packed into batches of up to n_batch tokens."""
        self._clear(n_seq)
        self.batch.clear()
        start = time.perf_counter()
        for seq in range(n_seq):
            for pos, token in enumerate(self.tokens):
                if self.batch.free == 0:
                    self._decode()
                self.batch.add(token, pos, seq, pos == len(self.tokens) - 1)
        if self.batch.n:
            self._decode()
        return time.perf_counter() - start

    def generation(self, n_seq: int) -> float:
        """Seconds for ``gen_tokens`` steps of one token per sequence (after the prompts)."""
        start = time.perf_counter()
        base = len(self.tokens)
        for step in range(self.config.gen_tokens):
            for seq in range(n_seq):
                self.batch.add(self.tokens[(step + seq) % base], base + step, seq, True)
            self._decode()
        return time.perf_counter() - start

    def run(self, on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        cfg = self.config
        self.prompt_processing(1)  # warm-up
        self.generation(1)
        rows = []
        for n_seq in cfg.batch_sizes:
            pp, tg = [], []
            for _ in range(cfg.repeats):
                pp.append(n_seq * cfg.prompt_tokens / self.prompt_processing(n_seq))
                tg.append(n_seq * cfg.gen_tokens / self.generation(n_seq))
            row = {"batch_size": n_seq, "pp_tokens_per_s": statistics.median(pp), "pp_runs": pp,
                   "tg_tokens_per_s": statistics.median(tg), "tg_runs": tg,
                   "tg_tokens_per_s_per_sequence": statistics.median(tg) / n_seq}
            rows.append(row)
            if on_result:
                on_result(row)
        return rows


def engine_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| batch size | pp tok/s | tg tok/s (aggregate) | tg tok/s per sequence |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['batch_size']} | {r['pp_tokens_per_s']:.1f} | {r['tg_tokens_per_s']:.1f} | "
                     f"{r['tg_tokens_per_s_per_sequence']:.1f} |")
    return "\n".join(lines)


def write_engine_plot(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    from slmkit.bench.plots import _pyplot, save_figure

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sizes = [r["batch_size"] for r in rows]
    ax.plot(sizes, [r["pp_tokens_per_s"] for r in rows], marker="o", label="prompt processing (pp)")
    ax.plot(sizes, [r["tg_tokens_per_s"] for r in rows], marker="o", label="generation (tg), aggregate")
    ax.set(title=title, xlabel="batch size (sequences)", ylabel="tokens/s")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_ylim(bottom=0)
    save_figure(fig, path)
    plt.close(fig)
    return path
