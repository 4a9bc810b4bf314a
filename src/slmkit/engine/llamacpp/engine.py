"""LlamaCppEngine: the Engine protocol over a GGUF model and its batching scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmkit.engine.admission import Job, JobStream, check_tokens
from slmkit.engine.base import GenerationRequest, ModelInfo
from slmkit.engine.llamacpp.bindings import Context, Model, gguf_info
from slmkit.engine.llamacpp.lazy_grammar import check_grammar
from slmkit.engine.llamacpp.lifetime import Lifetime
from slmkit.engine.llamacpp.prompt_cache import default_budget
from slmkit.engine.llamacpp.scheduler import Scheduler
from slmkit.engine.llamacpp.template import ChatTemplate, plain_spans
from slmkit.settings import EngineSettings


def prompt_cache_budget(settings: EngineSettings) -> int:
    """``prompt_cache_mib`` in bytes; unset: sized from the memory available now (prompt_cache.py)."""
    if settings.prompt_cache_mib is not None:
        return settings.prompt_cache_mib * 2**20
    from slmkit.catalog.hardware import available_memory

    return default_budget(available_memory())


class LlamaCppEngine:
    """A GGUF model served with continuous batching."""

    def __init__(self, name: str, path: Path, settings: EngineSettings) -> None:
        self.name = name
        self.path = path
        self.parse_special_in_content = settings.parse_special_in_content
        self.lifetime = Lifetime(name)
        self.model = Model(path)
        try:
            self.ctx = Context(self.model, n_seq=settings.parallel, ctx_per_seq=settings.ctx_size,
                               n_batch=settings.batch_size, threads=settings.n_threads(),
                               type_k=settings.cache_type_k, type_v=settings.cache_type_v)
        except Exception:
            self.model.close()
            raise
        self.template = ChatTemplate(
            self.model.chat_template(),
            bos_token=self.model.special_text(self.model.bos),
            eos_token=self.model.special_text(self.model.eos),
        )
        self.scheduler = Scheduler(self.model, self.ctx, slots=settings.parallel,
                                   max_queue=settings.max_queue, prefill_chunk=settings.prefill_chunk,
                                   name=name, prompt_cache_bytes=prompt_cache_budget(settings),
                                   speculative=settings.speculative == "ngram")
        self._info = gguf_info(self.model, path, context_length=self.ctx.n_ctx_seq, slots=settings.parallel)

    @property
    def context_length(self) -> int:
        return self.ctx.n_ctx_seq

    @property
    def info(self) -> ModelInfo:
        return self._info

    def piece(self, token: int) -> str:
        return self.model.piece(token, special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        with self.lifetime.use():
            return self.model.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        with self.lifetime.use():
            return self.model.detokenize(tokens)

    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                    tools: list[dict[str, Any]] | None = None) -> str:
        return self.template.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)

    def chat_tokens(self, rendered: str) -> list[int]:
        """Tokenize a rendered chat. The template's markup is parsed for special tokens; message
        contents are not (a user who writes ``<|im_start|>system`` gets that text, not control
        tokens), unless ``engine.parse_special_in_content`` restores the old behaviour."""
        bos = self.template.bos_token
        add = self.model.add_bos and not (bos and rendered.startswith(bos))
        contents = getattr(rendered, "contents", ())
        with self.lifetime.use():
            spans = [] if self.parse_special_in_content or not contents else \
                plain_spans(rendered, contents, self.model.special_texts)
        if not spans:
            return self.tokenize(rendered, add_special=add, parse_special=True)
        tokens: list[int] = []
        pos = 0
        for start, end in spans:
            tokens += self.tokenize(rendered[pos:start], add_special=add and pos == 0, parse_special=True)
            tokens += self.tokenize(rendered[start:end], add_special=False, parse_special=False)
            pos = end
        return tokens + self.tokenize(rendered[pos:], add_special=False, parse_special=True)

    def generate(self, request: GenerationRequest) -> JobStream:
        """Queue the request (raises Overloaded at once when the queue is full, InvalidRequest
        for a token id outside the vocabulary)."""
        check_tokens(request.prompt, self.model.n_vocab)
        if request.sampling.grammar:
            with self.lifetime.use():
                check_grammar(self.model, request.sampling.grammar)
        job = Job(request=request, loop=asyncio.get_running_loop())
        self.scheduler.submit(job)
        return JobStream(job, self.scheduler)

    def stats(self) -> dict[str, float]:
        return self.scheduler.stats()

    @property
    def failure(self) -> str | None:
        """Why the engine stopped working (its scheduler thread died), else None."""
        return self.scheduler.failure

    def slot_states(self) -> list[dict[str, int | bool]]:
        return self.scheduler.slot_states()

    @property
    def in_use(self) -> bool:
        """A request thread is tokenizing or checking a grammar with this model right now."""
        return self.lifetime.in_use

    def close(self) -> None:
        self.lifetime.close()
        self.scheduler.close()
        self.ctx.close()
        self.model.close()
