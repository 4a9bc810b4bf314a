"""The MLX scheduler thread: continuous batching on mlx-lm's ``BatchGenerator``.

mlx-lm's batch generator keeps one decode batch and one prompt batch: a sequence inserted at
any step has its prompt read in chunks (``prefill_step_size`` tokens per step) beside the
running sequences, then joins the decode batch, and a sequence removed at any step leaves it.
The scheduler owns the generator on its own thread (MLX work stays on one thread), admits jobs
from the shared ``AdmissionQueue`` into free slots, and turns the generator's tokens into
events: the end-of-generation check, stop strings (held back until they cannot match), the
token budget, cancellation and usage counts are this module's; sampling is the request's own
``RequestSampler``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from slmkit.engine.admission import AdmissionQueue, Job, Outbox
from slmkit.engine.base import FinishReason, TokenLogprob
from slmkit.engine.mlx.logprobs import token_logprob
from slmkit.engine.mlx.sampling import RequestSampler
from slmkit.engine.mlx.text import IncrementalText
from slmkit.engine.onnx.batch import Row
from slmkit.engine.stops import SequenceEnd

log = logging.getLogger("slmkit.engine")
PREFILL_STEP = 256  # prompt tokens read per step, so running streams keep flowing


class MlxScheduler:
    def __init__(self, model: Any, decode: Any, *, slots: int, max_queue: int, context_length: int, eos: set[int],
                 name: str) -> None:
        self.model = model
        self.decode = decode  # token ids -> text
        self.context_length = context_length
        self.eos = eos
        self.slots: list[Row | None] = [None] * slots
        self.rows: dict[int, Row] = {}  # generator uid -> row
        self.uids: dict[int, int] = {}  # slot -> generator uid
        self.queue = AdmissionQueue(max_queue=max_queue, free_slots=lambda: len(self._free()))
        self.sequences_total = 0
        self.largest_batch = 0
        self.generator: Any = None
        self.failure: str | None = None
        self.outbox = Outbox()  # the events of a turn of the loop, delivered together at its end
        self.thread = threading.Thread(target=self._run, name=f"slm-mlx-{name}", daemon=True)
        self.thread.start()

    # -- called from the event loop -------------------------------------------------
    def submit(self, job: Job) -> None:
        self.queue.submit(job)

    def cancel(self, job: Job) -> None:
        self.queue.cancel(job)

    def stats(self) -> dict[str, float]:
        rows = list(self.rows.values())
        cells = len(self.slots) * self.context_length
        return {"running": len(rows), "waiting": self.queue.depth, "slots": len(self.slots),
                "kv_cache_usage_ratio": sum(r.tokens for r in rows) / cells, "prefix_cache_hit_tokens_total": 0,
                "batched_sequences_total": self.sequences_total, "largest_batch": self.largest_batch}

    def slot_states(self) -> list[dict[str, int | bool]]:
        out: list[dict[str, int | bool]] = []
        for index, row in enumerate(self.slots):
            live = row is not None and row.live
            out.append({"id": index, "busy": live, "cached_tokens": row.tokens if row and live else 0,
                        "generated": row.generated if row and live else 0})
        return out

    def close(self) -> None:
        self.queue.stop()
        self.thread.join()

    # -- the scheduler thread ----------------------------------------------------------
    def _run(self) -> None:
        try:
            self.generator = self._new_generator()
            while self.queue.wait_for_work(lambda: bool(self.rows)):
                self._drop_cancelled()
                self._admit()
                if self.rows:
                    self._step()
                self.outbox.flush()
        except BaseException as exc:  # pragma: no cover - a bug: per-batch failures are caught in _step
            log.exception("mlx scheduler crashed")
            self.failure = f"engine failure: {type(exc).__name__}: {exc}"  # the registry loads the model again
            self._fail_all(self.failure, FinishReason.ERROR)
        finally:
            self._fail_all("the model was unloaded", FinishReason.CANCELLED)
            self.outbox.flush()
            if self.generator is not None:
                self.generator.close()

    def _free(self) -> list[int]:
        return [i for i, row in enumerate(self.slots) if row is None or not row.live]

    def _admit(self) -> None:
        for slot in self._free():
            job = self.queue.pop()
            if job is None:
                return
            prompt = job.request.prompt
            budget = self.context_length - len(prompt) - 1
            if job.request.max_tokens is not None:
                budget = min(budget, job.request.max_tokens)
            if not prompt or budget <= 0:  # the service checks first
                job.end(FinishReason.ERROR, f"the prompt does not fit the context of {self.context_length} tokens")
                continue
            sampler = RequestSampler(job.request.sampling, _mx())
            row = Row(job=job, slot=slot, sampler=sampler.chain, stream=IncrementalText(self.decode, prompt),
                      end=SequenceEnd(job.request.stop, job.request.max_tokens, self.context_length),
                      prompt_tokens=len(prompt))
            uid = self.generator.insert([prompt], max_tokens=[budget], samplers=[sampler])[0]
            self.slots[slot], self.rows[uid], self.uids[slot] = row, row, uid
            job.outbox = self.outbox  # its events leave with the rest of the turn's
            self.sequences_total += 1
            self.largest_batch = max(self.largest_batch, len(self.rows))

    def _drop_cancelled(self) -> None:
        for uid, row in list(self.rows.items()):
            if row.job is not None and row.job.cancelled:
                self._finish(uid, row, "", FinishReason.CANCELLED, in_generator=True)

    def _step(self) -> None:
        try:
            _, responses = self.generator.next()
        except Exception as exc:
            log.warning("mlx batch of %d failed: %s", len(self.rows), exc)
            self._end_rows(f"decode failed: {exc}", FinishReason.ERROR)
            self.generator = self._new_generator()  # the next requests start afresh
            return
        for response in responses:
            row = self.rows.get(response.uid)
            if row is not None and row.live:
                self._on_token(response.uid, row, int(response.token), response.finish_reason is None,
                               self._logprobs(row, response))

    def _logprobs(self, row: Row, response: Any) -> list[TokenLogprob]:
        top_n = row.job.request.logprobs if row.job is not None else None
        if top_n is None:
            return []
        return [token_logprob(response.logprobs, int(response.token), top_n, self.decode)]

    def _on_token(self, uid: int, row: Row, token: int, in_generator: bool, logprobs: list[TokenLogprob]) -> None:
        assert row.job is not None
        if not row.first_token_at:
            row.first_token_at = time.perf_counter()
        if token in self.eos:
            row.generated += 1  # counted, as llama-server, vLLM and Ollama count it; never shown
            self._finish(uid, row, *row.end.end(FinishReason.STOP, row.stream.flush()), in_generator=in_generator)
            return
        row.generated += 1
        text, reason = row.end.step(row.stream.add(token), row.generated, row.tokens, flush=row.stream.flush)
        if reason is None and not in_generator:  # the generator's budget (max_tokens or the context) ran out
            rest, reason = row.end.end(FinishReason.LENGTH, row.stream.flush())
            text += rest
        if reason is not None:
            self._finish(uid, row, text, reason, [token], in_generator=in_generator, logprobs=logprobs)
        else:
            event = row.event(text, [token])
            event.logprobs = logprobs
            row.job.send(event)

    def _finish(self, uid: int, row: Row, text: str, reason: FinishReason, tokens: list[int] | None = None, *,
                in_generator: bool, error: str | None = None, logprobs: list[TokenLogprob] | None = None) -> None:
        """Send the row's final event, take it out of the generator and free its slot."""
        assert row.job is not None
        event = row.event(text, tokens or [], reason, error=error)
        event.logprobs = logprobs or []
        job, row.job = row.job, None
        self.rows.pop(uid, None)  # free before the caller hears of the end: stats() then shows it idle
        if self.uids.get(row.slot) == uid:
            self.slots[row.slot] = None
            del self.uids[row.slot]
        if in_generator and self.generator is not None:
            self.generator.remove([uid])
        job.send(event)

    def _end_rows(self, message: str, reason: FinishReason) -> None:
        for uid, row in list(self.rows.items()):
            if row.live:
                self._finish(uid, row, "", reason, in_generator=False,
                             error=message if reason is FinishReason.ERROR else None)

    def _fail_all(self, message: str, reason: FinishReason) -> None:
        self._end_rows(message, reason)
        self.queue.end_all(reason, message)

    def _new_generator(self) -> Any:
        from mlx_lm.generate import BatchGenerator

        batch = len(self.slots)
        mx = _mx()
        return BatchGenerator(self.model, completion_batch_size=batch, prefill_batch_size=batch,
                              prefill_step_size=PREFILL_STEP, stream=mx.new_stream(mx.default_device()))


def _mx() -> Any:
    import mlx.core as mx

    return mx
