"""LlamaCppEmbedder: pooled, normalized sentence vectors from a GGUF embedding model.

Inputs are packed into batches (several sequences per ``llama_encode``, one sequence id
each) and pooled by llama.cpp with the model's pooling type. One lock serializes the
context; requests run in a worker thread so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import llama_cpp as ll
import numpy as np

from slmkit.engine.base import ModelInfo
from slmkit.engine.llamacpp.bindings import Batch, Model, gguf_info
from slmkit.engine.llamacpp.lifetime import Lifetime
from slmkit.errors import EngineError, InvalidRequest, ModelLoadError
from slmkit.settings import EngineSettings

MAX_TOKENS_KEY = "slmkit.embedding.max_tokens"  # written by slmkit.convert.bert_gguf
MAX_SEQS = 32  # sequences pooled in one encode call


class EmbeddingContext:
    """A llama.cpp context in embedding mode: every token an output, one batch = one ubatch."""

    def __init__(self, model: Model, *, n_tokens: int, threads: int) -> None:
        params = ll.llama_context_default_params()
        params.n_ctx = n_tokens
        params.n_batch = n_tokens
        params.n_ubatch = n_tokens  # other combinations abort inside ggml for encoders
        params.n_seq_max = MAX_SEQS
        params.kv_unified = True
        params.n_threads = threads
        params.n_threads_batch = threads
        params.embeddings = True
        params.pooling_type = ll.LLAMA_POOLING_TYPE_UNSPECIFIED  # the model's own
        params.no_perf = True
        ptr = ll.llama_init_from_model(model.ptr, params)
        if not ptr:
            raise ModelLoadError(f"llama.cpp could not create an embedding context for {model.path}")
        self.ptr = ptr
        self.memory = ll.llama_get_memory(ptr)
        self.pooling = int(ll.llama_pooling_type(ptr))
        self.n_tokens = n_tokens

    def run(self, batch: Batch, causal_decoder: bool) -> None:
        if self.memory:
            ll.llama_memory_clear(self.memory, True)
        rc = ll.llama_decode(self.ptr, batch.raw) if causal_decoder else ll.llama_encode(self.ptr, batch.raw)
        if rc != 0:
            raise EngineError(f"llama.cpp failed to embed the batch (code {rc})")

    def vector(self, seq: int, n_embd: int) -> np.ndarray:
        ptr = ll.llama_get_embeddings_seq(self.ptr, seq)
        if not ptr:
            raise EngineError("llama.cpp returned no pooled embedding (the model has no pooling)")
        return np.ctypeslib.as_array(ptr, shape=(n_embd,)).astype(np.float32)

    def close(self) -> None:
        if self.ptr:
            ll.llama_free(self.ptr)
            self.ptr = None


class LlamaCppEmbedder:
    """An embedding model: ``embed`` turns token lists into unit-length vectors."""

    kind = "embedding"

    def __init__(self, name: str, path: Path, settings: EngineSettings) -> None:
        self.name = name
        self.path = path
        self.model = Model(path)
        try:
            self.dimensions = int(ll.llama_model_n_embd(self.model.ptr))
            declared = self.model.meta(MAX_TOKENS_KEY)
            trained = int(self.model.n_ctx_train)
            self.max_tokens: int = min(int(declared), trained) if declared else trained
            self.ctx = EmbeddingContext(self.model, n_tokens=max(self.max_tokens, 2048), threads=settings.n_threads())
            if self.ctx.pooling == ll.LLAMA_POOLING_TYPE_NONE:
                raise ModelLoadError(f"{path.name} has no pooling type: it is not a sentence-embedding model")
        except Exception:
            self.model.close()
            raise
        self.causal = not bool(ll.llama_model_has_encoder(self.model.ptr)) and self.model.meta(
            f"{self.model.meta('general.architecture')}.attention.causal") != "false"
        self.batch = Batch(self.ctx.n_tokens)
        self._lock = threading.Lock()
        self.lifetime = Lifetime(name)
        self._busy = 0
        self._info = gguf_info(self.model, path, context_length=self.max_tokens, kind="embedding",
                               embedding_length=self.dimensions, pooling=self.ctx.pooling)

    @property
    def context_length(self) -> int:
        return self.max_tokens

    @property
    def info(self) -> ModelInfo:
        return self._info

    def piece(self, token: int) -> str:
        return self.model.piece(token, special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]:
        with self.lifetime.use():
            return self.model.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        with self.lifetime.use():
            return self.model.detokenize(tokens)

    @property
    def in_use(self) -> bool:
        return self.lifetime.in_use

    def truncate(self, tokens: list[int]) -> list[int]:
        """Cut to the model's limit keeping the final separator token the model was trained with."""
        if len(tokens) <= self.max_tokens:
            return tokens
        last = tokens[-1]
        keep_last = self.model.meta("tokenizer.ggml.add_eos_token") == "true" or ll.llama_vocab_get_add_sep(
            self.model.vocab)
        return [*tokens[: self.max_tokens - 1], last] if keep_last else tokens[: self.max_tokens]

    async def embed(self, inputs: list[list[int]]) -> list[list[float]]:
        """Unit-length vectors for already tokenized, already truncated inputs (400 naming
        ``input`` for an empty input or a token id outside the vocabulary). Cancelling the
        awaiting task (the client went away) stops the work at the next group of inputs."""
        for index, tokens in enumerate(inputs):
            if not tokens:
                raise InvalidRequest(f"input {index} is empty", param="input")
            if min(tokens) < 0 or max(tokens) >= self.model.n_vocab:
                raise InvalidRequest(f"input {index} holds a token id outside the vocabulary "
                                     f"(0..{self.model.n_vocab - 1})", param="input")
        cancelled = threading.Event()
        self._busy += 1
        try:
            with self.lifetime.use():
                return await asyncio.to_thread(self._embed_all, inputs, cancelled)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finally:
            self._busy -= 1

    def _embed_all(self, inputs: list[list[int]], cancelled: threading.Event | None = None) -> list[list[float]]:
        out: list[list[float]] = []
        with self._lock:
            group: list[list[int]] = []
            for tokens in inputs:
                if cancelled is not None and cancelled.is_set():
                    raise EngineError("the embedding request was cancelled")
                if len(tokens) > self.ctx.n_tokens:
                    raise EngineError(f"an input of {len(tokens)} tokens does not fit the batch")
                if group and (sum(map(len, group)) + len(tokens) > self.ctx.n_tokens or len(group) >= MAX_SEQS):
                    out.extend(self._embed_group(group))
                    group = []
                group.append(tokens)
            if group:
                out.extend(self._embed_group(group))
        return out

    def _embed_group(self, group: list[list[int]]) -> list[list[float]]:
        batch = self.batch
        batch.clear()
        for seq, tokens in enumerate(group):
            for pos, token in enumerate(tokens):
                batch.add(token, pos, seq, True)
        self.ctx.run(batch, self.causal)
        vectors = []
        for seq in range(len(group)):
            vec = self.ctx.vector(seq, self.dimensions)
            norm = float(np.linalg.norm(vec))
            vectors.append((vec / norm if norm > 0 else vec).tolist())
        return vectors

    def stats(self) -> dict[str, float]:
        return {"running": self._busy, "waiting": 0, "slots": 1, "kv_cache_usage_ratio": 0.0,
                "prefix_cache_hit_tokens_total": 0}

    def close(self) -> None:
        self.lifetime.close()
        with self._lock:
            self.batch.close()
            self.ctx.close()
            self.model.close()

