"""Admission, queueing and decoding for the ONNX engine.

One thread per model owns every generator. Admission and the wait queue follow the llama.cpp
scheduler exactly (``parallel`` slots, ``max_queue`` waiting, ``Overloaded`` at submit), so
metrics, limits and drain behave the same. Each slot holds one ``og.Generator``; a step gives
every active slot one token in turn. The CPU build of onnxruntime-genai has no continuous
batching (paged attention is CUDA-only), so slots interleave rather than share one forward pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from slmkit.engine.base import FinishReason, TokenEvent
from slmkit.engine.llamacpp.slots import Job
from slmkit.engine.onnx.sampling import search_options
from slmkit.engine.stops import StopMatcher
from slmkit.errors import Overloaded, ServiceUnavailable

log = logging.getLogger("slmkit.engine")


@dataclass(eq=False)
class OnnxSlot:
    index: int
    job: Job | None = None
    generator: Any = None
    stream: Any = None  # og.TokenizerStream: token -> text piece, UTF-8 safe
    stops: StopMatcher = field(default_factory=lambda: StopMatcher(()))
    generated: int = 0
    tokens: int = 0  # prompt plus generated, held in this slot's KV cache
    admitted_at: float = 0.0
    first_token_at: float = 0.0

    @property
    def busy(self) -> bool:
        return self.job is not None

    def event(self, text: str, tokens: list[int], finish: FinishReason | None = None,
              error: str | None = None) -> TokenEvent:
        assert self.job is not None
        ev = TokenEvent(text=text, token_ids=tokens, finish_reason=finish,
                        prompt_tokens=len(self.job.request.prompt), completion_tokens=self.generated, error=error)
        if finish is not None:
            now = time.perf_counter()
            first = self.first_token_at or now
            ev.timings = {"queue_s": self.admitted_at - self.job.enqueued_at, "prompt_s": first - self.admitted_at,
                          "generation_s": now - first, "total_s": now - self.job.enqueued_at}
        return ev

    def release(self) -> None:
        self.job = None
        self.generator = None  # frees the KV cache
        self.stream = None
        self.tokens = 0


class OnnxScheduler:
    def __init__(self, og: Any, model: Any, tokenizer: Any, *, slots: int, max_queue: int, context_length: int,
                 eos: set[int], name: str) -> None:
        self.og = og
        self.model = model
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.eos = eos
        self.slots = [OnnxSlot(index=i) for i in range(slots)]
        self.max_queue = max_queue
        self.waiting: deque[Job] = deque()
        self.cond = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._run, name=f"slm-onnx-{name}", daemon=True)
        self.thread.start()

    # -- called from the event loop -------------------------------------------------
    def submit(self, job: Job) -> None:
        with self.cond:
            if self.stopping:
                raise ServiceUnavailable("the model is shutting down")
            free = sum(not s.busy for s in self.slots)
            if len(self.waiting) >= free + self.max_queue:
                raise Overloaded(f"server busy: {self.max_queue} requests already waiting", retry_after=1)
            self.waiting.append(job)
            self.cond.notify()

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        with self.cond:
            self.cond.notify()

    def stats(self) -> dict[str, float]:
        cells = len(self.slots) * self.context_length
        return {"running": sum(s.busy for s in self.slots), "waiting": len(self.waiting),
                "slots": len(self.slots), "kv_cache_usage_ratio": sum(s.tokens for s in self.slots) / cells,
                "prefix_cache_hit_tokens_total": 0}

    def slot_states(self) -> list[dict[str, int | bool]]:
        return [{"id": s.index, "busy": s.busy, "cached_tokens": s.tokens, "generated": s.generated}
                for s in self.slots]

    def close(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()
        self.thread.join()

    # -- the scheduler thread ----------------------------------------------------------
    def _run(self) -> None:
        try:
            while self._wait_for_work():
                self._admit()
                for slot in self.slots:
                    if slot.job is not None and slot.job.cancelled:
                        self._finish(slot, "", FinishReason.CANCELLED)
                    elif slot.busy:
                        self._step(slot)
        except Exception as exc:  # pragma: no cover - a crash inside onnxruntime-genai
            log.exception("onnx scheduler crashed")
            self._fail_all(f"engine failure: {exc}", FinishReason.ERROR)
        finally:
            self._fail_all("the model was unloaded", FinishReason.CANCELLED)

    def _wait_for_work(self) -> bool:
        with self.cond:
            while not self.stopping and not self.waiting and not any(s.busy for s in self.slots):
                self.cond.wait()
            return not self.stopping

    def _admit(self) -> None:
        while True:
            with self.cond:
                free = [s for s in self.slots if not s.busy]
                if not free or not self.waiting:
                    return
                job = self.waiting.popleft()
            if job.cancelled:
                job.send(TokenEvent(finish_reason=FinishReason.CANCELLED, prompt_tokens=len(job.request.prompt)))
                continue
            self._place(job, free[0])

    def _place(self, job: Job, slot: OnnxSlot) -> None:
        request = job.request
        limit = self.context_length
        if request.max_tokens is not None:
            limit = min(limit, len(request.prompt) + request.max_tokens)
        slot.job, slot.generated, slot.first_token_at = job, 0, 0.0
        slot.admitted_at = time.perf_counter()
        slot.stops = StopMatcher(request.stop)
        try:
            params = self.og.GeneratorParams(self.model)
            params.set_search_options(**search_options(request.sampling, limit))
            slot.generator = self.og.Generator(self.model, params)
            slot.generator.append_tokens(request.prompt)
        except Exception as exc:
            log.warning("onnx request failed at prefill: %s", exc)
            self._finish(slot, "", FinishReason.ERROR, error=f"prefill failed: {exc}")
            return
        slot.stream = self.tokenizer.create_stream()
        slot.tokens = len(request.prompt)

    def _step(self, slot: OnnxSlot) -> None:
        assert slot.job is not None
        generator = slot.generator
        if generator.is_done():
            self._finish(slot, slot.stops.flush(), FinishReason.LENGTH)
            return
        try:
            generator.generate_next_token()
        except Exception as exc:
            self._finish(slot, "", FinishReason.ERROR, error=f"decode failed: {exc}")
            return
        token = int(generator.get_next_tokens()[0])
        if not slot.first_token_at:
            slot.first_token_at = time.perf_counter()
        slot.tokens += 1
        if token in self.eos:
            self._finish(slot, slot.stops.flush(), FinishReason.STOP)
            return
        slot.generated += 1
        text, hit = slot.stops.feed(slot.stream.decode(token))
        request = slot.job.request
        if hit:
            self._finish(slot, text, FinishReason.STOP, [token])
        elif (request.max_tokens is not None and slot.generated >= request.max_tokens) or (
                slot.tokens + 1 >= self.context_length):
            self._finish(slot, text + slot.stops.flush(), FinishReason.LENGTH, [token])
        else:
            slot.job.send(slot.event(text, [token]))

    def _finish(self, slot: OnnxSlot, text: str, reason: FinishReason, tokens: list[int] | None = None,
                error: str | None = None) -> None:
        assert slot.job is not None
        slot.job.send(slot.event(text, tokens or [], reason, error=error))
        slot.release()

    def _fail_all(self, message: str, reason: FinishReason) -> None:
        for slot in self.slots:
            if slot.job is not None:
                self._finish(slot, "", reason, error=message)
        with self.cond:
            waiting, self.waiting = list(self.waiting), deque()
        for job in waiting:
            job.send(TokenEvent(finish_reason=reason, prompt_tokens=len(job.request.prompt),
                                error=message if reason is FinishReason.ERROR else None))
