"""LlamaCppEngine: the Engine protocol over a GGUF model and its batching scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from slmkit.engine.admission import EventStream, Job
from slmkit.engine.base import GenerationRequest
from slmkit.engine.llamacpp.bindings import Context, Model
from slmkit.engine.llamacpp.scheduler import Scheduler
from slmkit.engine.llamacpp.template import ChatTemplate
from slmkit.settings import EngineSettings


class LlamaCppEngine:
    """A GGUF model served with continuous batching."""

    def __init__(self, name: str, path: Path, settings: EngineSettings) -> None:
        self.name = name
        self.path = path
        self.model = Model(path)
        try:
            self.ctx = Context(self.model, n_seq=settings.parallel, ctx_per_seq=settings.ctx_size,
                               n_batch=settings.batch_size, threads=settings.n_threads())
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
                                   name=name, prompt_cache_bytes=settings.prompt_cache_mib * 2**20,
                                   speculative=settings.speculative == "ngram")
        self._info = {**self.model.describe(), "file": str(path), "format": "gguf",
                      "context_length": self.ctx.n_ctx_seq, "slots": settings.parallel}

    @property
    def context_length(self) -> int:
        return self.ctx.n_ctx_seq

    @property
    def info(self) -> dict[str, Any]:
        return self._info

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = True) -> list[int]:
        return self.model.tokenize(text, add_special=add_special, parse_special=parse_special)

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.model.detokenize(tokens)

    def render_chat(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
                    tools: list[dict[str, Any]] | None = None) -> str:
        return self.template.render(messages, add_generation_prompt=add_generation_prompt, tools=tools)

    def chat_tokens(self, rendered: str) -> list[int]:
        bos = self.template.bos_token
        add = self.model.add_bos and not (bos and rendered.startswith(bos))
        return self.tokenize(rendered, add_special=add, parse_special=True)

    def generate(self, request: GenerationRequest) -> EventStream:
        """Queue the request (raises Overloaded at once when the queue is full)."""
        job = Job(request=request, loop=asyncio.get_running_loop())
        self.scheduler.submit(job)
        return EventStream(job, self.scheduler)

    def stats(self) -> dict[str, float]:
        return self.scheduler.stats()

    def slot_states(self) -> list[dict[str, int | bool]]:
        return self.scheduler.slot_states()

    def close(self) -> None:
        self.scheduler.close()
        self.ctx.close()
        self.model.close()
