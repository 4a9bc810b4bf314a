"""Admission, continuous batching and decoding for the ONNX engine.

One thread per model owns the decoder. Admission is the shared ``AdmissionQueue`` (the llama.cpp
engine's rules: ``parallel`` slots, ``max_queue`` waiting, ``Overloaded`` at submit), so
metrics, limits and drain behave the same.

Batching is continuous (see decoder.py): each turn of the loop takes waiting jobs into free
slots, reads up to ``prefill_chunk`` tokens of the waiting prompts (oldest first, in chunks), and
runs one decode step for every sequence in the running batch. A prompt read in full gets its
first token and joins the running batch at the next step, however long the others have run;
prompts read in the same turn join together. A sequence that ends (end of generation, stop
string, length, cancellation) leaves the batch at once and frees its slot. A late request so
waits for at most one step and the chunks of the prompts before it, not for a batch to finish.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from slmkit.engine.admission import AdmissionQueue, Job, Outbox
from slmkit.engine.base import FinishReason
from slmkit.engine.onnx.batch import Row
from slmkit.engine.onnx.decoder import Decoder
from slmkit.engine.onnx.sampling import TokenSampler
from slmkit.engine.stops import SequenceEnd

log = logging.getLogger("slmkit.engine")


@dataclass(eq=False)
class OnnxSlot:
    index: int
    row: Row | None = None

    @property
    def busy(self) -> bool:
        return self.row is not None and self.row.live


class OnnxScheduler:
    def __init__(self, decoder: Decoder, tokenizer: Any, *, slots: int, max_queue: int, context_length: int,
                 eos: set[int], prefill_chunk: int, name: str) -> None:
        self.decoder = decoder
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.eos = eos
        self.prefill_chunk = prefill_chunk
        self.slots = [OnnxSlot(index=i) for i in range(slots)]
        self.queue = AdmissionQueue(max_queue=max_queue, free_slots=lambda: len(self._free()))
        self.running: list[Row] = []  # row i of the decoder's KV buffer
        self.reading: list[Row] = []  # admitted, prompts read in turn (the first into the scratch row)
        self.steps_total = 0
        self.sequences_total = 0
        self.joined_running_total = 0  # sequences that joined while others were decoding
        self.largest_batch = 0
        self.outbox = Outbox()  # the events of a turn of the loop, delivered together at its end
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
                "kv_cache_usage_ratio": sum(r.cached for r in rows if r is not None) / cells,
                "prefix_cache_hit_tokens_total": 0, "decode_steps_total": self.steps_total,
                "batched_sequences_total": self.sequences_total, "joined_running_total": self.joined_running_total,
                "largest_batch": self.largest_batch}

    def slot_states(self) -> list[dict[str, int | bool]]:
        out: list[dict[str, int | bool]] = []
        running = {id(r): i for i, r in enumerate(self.running)}
        for s in self.slots:
            row = s.row if s.busy else None
            out.append({"id": s.index, "busy": row is not None, "cached_tokens": row.cached if row else 0,
                        "generated": row.generated if row else 0,
                        "batch_row": running.get(id(row), -1) if row else -1})
        return out

    def close(self) -> None:
        self.queue.stop()
        self.thread.join()
        self.decoder.close()

    # -- the scheduler thread ----------------------------------------------------------
    def _run(self) -> None:
        try:
            while self.queue.wait_for_work(lambda: bool(self.running or self.reading)):
                self._admit()
                for row in [*self.running, *self.reading]:
                    if row.job is not None and row.job.cancelled:
                        self._finish(row, "", FinishReason.CANCELLED)
                self._read()
                if self.running:
                    self._decode()
                self.outbox.flush()
        except Exception as exc:  # pragma: no cover - a crash inside onnxruntime
            log.exception("onnx scheduler crashed")
            self._fail_all(f"engine failure: {exc}", FinishReason.ERROR)
        finally:
            self._fail_all("the model was unloaded", FinishReason.CANCELLED)
            self.outbox.flush()

    def _free(self) -> list[OnnxSlot]:
        return [s for s in self.slots if not s.busy]

    def _admit(self) -> None:
        for slot in self._free():
            job = self.queue.pop()
            if job is None:
                return
            if len(job.request.prompt) >= self.context_length:  # the service checks first
                job.end(FinishReason.ERROR, f"the prompt does not fit the context of {self.context_length} tokens")
                continue
            if not job.request.prompt:
                job.end(FinishReason.ERROR, "the prompt has no tokens")
                continue
            request = job.request
            row = Row(job=job, slot=slot.index, sampler=TokenSampler(request.sampling),
                      stream=self.tokenizer.create_stream(),
                      end=SequenceEnd(request.stop, request.max_tokens, self.context_length),
                      prompt_tokens=len(request.prompt))
            slot.row = row  # the slot counts as taken from now on (admission)
            job.outbox = self.outbox  # its events leave with the rest of the turn's
            self.reading.append(row)

    def _read(self) -> None:
        """Up to ``prefill_chunk`` tokens of the waiting prompts, each into its own row; the
        prompts read in full join the running batch with their first token."""
        budget, done = self.prefill_chunk, []
        for i, row in enumerate(list(self.reading)):
            assert row.job is not None
            prompt = row.job.request.prompt
            chunk = prompt[row.cached:row.cached + budget]
            if not chunk:
                break
            try:
                logits = self.decoder.prefill(len(self.running) + i, chunk, row.cached)
            except Exception as exc:
                log.warning("onnx prefill failed: %s", exc)
                self._finish(row, "", FinishReason.ERROR, error=f"prefill failed: {exc}")
                return
            row.cached += len(chunk)
            budget -= len(chunk)
            if row.cached < len(prompt):
                break
            done.append((row, logits))
        joined = bool(self.running)
        for row, _ in done:  # the first rows after the running ones: they join where they are
            self.reading.remove(row)
            self.running.append(row)
            self.sequences_total += 1
            self.joined_running_total += joined
        for row, logits in done:
            if row.live:
                self._on_token(row, row.sampler.pick(logits))

    def _decode(self) -> None:
        """One step for every sequence of the running batch."""
        rows = list(self.running)
        try:
            logits = self.decoder.decode([r.last for r in rows], [r.cached for r in rows])
        except Exception as exc:
            log.warning("onnx decode step of %d failed: %s", len(rows), exc)
            for row in rows:
                self._finish(row, "", FinishReason.ERROR, error=f"decode failed: {exc}")
            return
        self.steps_total += 1
        self.largest_batch = max(self.largest_batch, len(rows))
        for row in rows:
            row.cached += 1
        for row, out in zip(rows, logits, strict=True):
            if row.live:
                self._on_token(row, row.sampler.pick(out))

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
        row.last = token
        text, reason = row.end.step(row.stream.decode(token), row.generated, row.prompt_tokens + row.generated)
        if reason is not None:
            self._finish(row, text, reason, [token])
        else:
            row.job.send(row.event(text, [token]))

    def _finish(self, row: Row, text: str, reason: FinishReason, tokens: list[int] | None = None,
                error: str | None = None) -> None:
        """Send the row's final event, take it out of the batch and free its slot."""
        job = row.job
        assert job is not None
        event = row.event(text, tokens or [], reason, error=error)
        row.job = None  # free before the caller hears of the end: stats() then shows it idle
        if row in self.running:  # the last running row takes its place
            i, last = self.running.index(row), len(self.running) - 1
            if i != last:
                self.decoder.move(last, i, self.running[last].cached)
                self.running[i] = self.running[last]
            self.running.pop()
            self._shift_reading(0)
        elif row in self.reading:
            j = self.reading.index(row)
            self.reading.remove(row)
            self._shift_reading(j)
        slot = self.slots[row.slot]
        if slot.row is row:
            slot.row = None
        job.send(event)

    def _shift_reading(self, first: int) -> None:
        """Move the rows of prompts being read, from ``first`` on, down one row (after a row
        before them left), so that they follow the running rows."""
        base = len(self.running)
        for j in range(first, len(self.reading)):
            if self.reading[j].cached:
                self.decoder.move(base + j + 1, base + j, self.reading[j].cached)

    def _fail_all(self, message: str, reason: FinishReason) -> None:
        for row in [*self.running, *self.reading]:
            if row.live:
                self._finish(row, "", reason, error=message if reason is FinishReason.ERROR else None)
        self.running, self.reading = [], []
        self.queue.end_all(reason, message)
