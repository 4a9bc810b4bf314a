"""Admission, static batching and decoding for the ONNX engine.

One thread per model owns every generator. Admission is the shared ``AdmissionQueue`` (the
llama.cpp engine's rules: ``parallel`` slots, ``max_queue`` waiting, ``Overloaded`` at submit),
so metrics, limits and drain behave the same.

Batching: the CPU build of onnxruntime-genai has no continuous batching (paged attention is
CUDA-only, and a generator reads prompts once), so waiting requests are grouped into static
batches, one generator each (see batch.py). A new batch starts when requests wait for every free
slot, or when the oldest has waited ``batch_wait`` seconds, so that requests arriving together
share one forward pass. Requests that arrive while batches run do not wait for them to end: they
form the next batch at once on the slots that are free, and the running batches take turns, one
step each. A finished or cancelled sequence frees its slot at once (its row in the generator is
dropped); the batch runs on for the others.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from slmkit.engine.admission import AdmissionQueue, Job
from slmkit.engine.base import FinishReason
from slmkit.engine.onnx.batch import OnnxBatch, Row, max_length, needs_own_batch
from slmkit.engine.onnx.sampling import TokenSampler
from slmkit.engine.stops import SequenceEnd

log = logging.getLogger("slmkit.engine")


@dataclass(eq=False)
class OnnxSlot:
    index: int
    row: Row | None = None
    batch: int = -1

    @property
    def busy(self) -> bool:
        return self.row is not None and self.row.live


class OnnxScheduler:
    def __init__(self, og: Any, model: Any, tokenizer: Any, *, slots: int, max_queue: int, context_length: int,
                 eos: set[int], pad: int, batch_wait: float, name: str) -> None:
        self.og = og
        self.model = model
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.eos = eos
        self.pad = pad
        self.filler = min(eos) if eos else pad
        self.batch_wait = batch_wait
        self.slots = [OnnxSlot(index=i) for i in range(slots)]
        self.queue = AdmissionQueue(max_queue=max_queue, free_slots=lambda: len(self._free()))
        self.batches: list[OnnxBatch] = []
        self.batches_total = 0
        self.batched_sequences_total = 0
        self.largest_batch = 0
        self.thread = threading.Thread(target=self._run, name=f"slm-onnx-{name}", daemon=True)
        self.thread.start()

    # -- called from the event loop -------------------------------------------------
    def submit(self, job: Job) -> None:
        self.queue.submit(job)

    def cancel(self, job: Job) -> None:
        self.queue.cancel(job)

    def stats(self) -> dict[str, float]:
        rows = [s.row for s in self.slots if s.busy]
        cells = len(self.slots) * self.context_length
        return {"running": len(rows), "waiting": self.queue.depth, "slots": len(self.slots),
                "kv_cache_usage_ratio": sum(r.tokens for r in rows if r is not None) / cells,
                "prefix_cache_hit_tokens_total": 0, "batches_running": len(self.batches),
                "batches_total": self.batches_total, "batched_sequences_total": self.batched_sequences_total,
                "largest_batch": self.largest_batch}

    def slot_states(self) -> list[dict[str, int | bool]]:
        out: list[dict[str, int | bool]] = []
        for s in self.slots:
            row = s.row if s.busy else None
            out.append({"id": s.index, "busy": row is not None, "cached_tokens": row.tokens if row else 0,
                        "generated": row.generated if row else 0, "batch": s.batch if row else -1})
        return out

    def close(self) -> None:
        self.queue.stop()
        self.thread.join()

    # -- the scheduler thread ----------------------------------------------------------
    def _run(self) -> None:
        try:
            while self.queue.wait_for_work(lambda: bool(self.batches)):
                self._admit()
                for batch in list(self.batches):
                    self._step(batch)
        except Exception as exc:  # pragma: no cover - a crash inside onnxruntime-genai
            log.exception("onnx scheduler crashed")
            self._fail_all(f"engine failure: {exc}", FinishReason.ERROR)
        finally:
            self._fail_all("the model was unloaded", FinishReason.CANCELLED)

    def _free(self) -> list[OnnxSlot]:
        return [s for s in self.slots if not s.busy]

    def _admit(self) -> None:
        """Start one batch from the waiting jobs when one should start (see the module doc)."""
        free = self._free()
        if not free or not self.queue.ready(len(free), self.batch_wait, block=not self.batches):
            return
        rows: list[Row] = []
        for slot in free:
            job = self.queue.pop(accept=lambda j: not rows or not needs_own_batch(j.request.prompt, self.pad))
            if job is None:
                break
            if len(job.request.prompt) >= self.context_length:  # the service checks first; never pad past it
                job.end(FinishReason.ERROR, f"the prompt does not fit the context of {self.context_length} tokens")
                continue
            rows.append(self._reserve(slot, job))  # the slot counts as taken from now on (admission)
            if needs_own_batch(job.request.prompt, self.pad):
                break
        if rows:
            self._start(rows)

    def _reserve(self, slot: OnnxSlot, job: Job) -> Row:
        request = job.request
        row = Row(job=job, slot=slot.index, sampler=TokenSampler(request.sampling),
                  stream=self.tokenizer.create_stream(),
                  end=SequenceEnd(request.stop, request.max_tokens, self.context_length),
                  prompt_tokens=len(request.prompt))
        slot.row, slot.batch = row, self.batches_total + 1
        return row

    def _start(self, rows: list[Row]) -> None:
        """Read the rows' prompts into one new generator (the prefill)."""
        jobs = [row.job for row in rows if row.job is not None]
        prompts = [job.request.prompt for job in jobs]
        budgets = [job.request.max_tokens or self.context_length - len(job.request.prompt) for job in jobs]
        self.batches_total += 1
        try:
            batch = OnnxBatch(self.og, self.model, rows, prompts, batch_id=self.batches_total, pad=self.pad,
                          length=max_length(prompts, budgets, self.context_length), filler=self.filler)
        except Exception as exc:
            log.warning("onnx batch of %d failed at prefill: %s", len(rows), exc)
            for row in rows:
                self._finish(row, "", FinishReason.ERROR, error=f"prefill failed: {exc}")
            return
        self.batches.append(batch)
        self.batched_sequences_total += len(rows)
        self.largest_batch = max(self.largest_batch, len(rows))

    def _step(self, batch: OnnxBatch) -> None:
        for row in batch.live_rows:
            if row.job is not None and row.job.cancelled:
                self._finish(row, "", FinishReason.CANCELLED)
        if batch.live_rows and batch.exhausted():
            for row in batch.live_rows:
                self._finish(row, *row.end.end(FinishReason.LENGTH))
        if batch.live_rows:
            try:
                chosen = batch.next_tokens()
            except Exception as exc:
                log.warning("onnx batch %d failed: %s", batch.id, exc)
                for row in batch.live_rows:
                    self._finish(row, "", FinishReason.ERROR, error=f"decode failed: {exc}")
            else:
                for row, token in zip(batch.rows, chosen, strict=True):
                    if row.live:
                        self._on_token(row, token)
        if not batch.live_rows:
            self.batches.remove(batch)
            batch.close()

    def _on_token(self, row: Row, token: int) -> None:
        assert row.job is not None
        if not row.first_token_at:
            row.first_token_at = time.perf_counter()
        if token in self.eos:
            row.generated += 1  # counted, as llama-server, vLLM and Ollama count it; never shown
            self._finish(row, *row.end.end(FinishReason.STOP))
            return
        row.sampler.accept(token)
        row.generated += 1
        text, reason = row.end.step(row.stream.decode(token), row.generated, row.tokens)
        if reason is not None:
            self._finish(row, text, reason, [token])
        else:
            row.job.send(row.event(text, [token]))

    def _finish(self, row: Row, text: str, reason: FinishReason, tokens: list[int] | None = None,
                error: str | None = None) -> None:
        """Send the row's final event and free its slot; its batch runs on for the others."""
        assert row.job is not None
        row.job.send(row.event(text, tokens or [], reason, error=error))
        row.job = None
        slot = self.slots[row.slot]
        if slot.row is row:
            slot.row, slot.batch = None, -1

    def _fail_all(self, message: str, reason: FinishReason) -> None:
        for batch in self.batches:
            for row in batch.live_rows:
                self._finish(row, "", reason, error=message if reason is FinishReason.ERROR else None)
            batch.close()
        self.batches = []
        self.queue.end_all(reason, message)
