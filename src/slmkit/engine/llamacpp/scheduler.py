"""Continuous batching: one thread per model owns the context and decodes every active
sequence in one ``llama_decode`` per step. Requests join and leave between steps."""

from __future__ import annotations

import logging
import threading
import time

from slmkit.engine.admission import AdmissionQueue, Job, Outbox, check_tokens
from slmkit.engine.base import FinishReason, TokenEvent, TokenLogprob
from slmkit.engine.llamacpp.bindings import Batch, Context, Model
from slmkit.engine.llamacpp.logprobs import first_prompt_token, score, token_logprob
from slmkit.engine.llamacpp.prompt_cache import MIN_TOKENS, PromptCache
from slmkit.engine.llamacpp.sampler import Sampler
from slmkit.engine.llamacpp.slots import Slot, common_prefix
from slmkit.engine.llamacpp.speculative import NgramIndex, SpecState, StepCost, one_graph
from slmkit.errors import SlmkitError

log = logging.getLogger("slmkit.engine")


class Scheduler:
    """Admits jobs into slots, runs decode steps, samples and hands tokens back."""

    def __init__(self, model: Model, ctx: Context, *, slots: int, max_queue: int, prefill_chunk: int,
                 name: str, prompt_cache_bytes: int = 0, speculative: bool = True) -> None:
        self.model = model
        self.ctx = ctx
        self.prefill_chunk = prefill_chunk
        self.slots = [Slot(seq=i) for i in range(slots)]
        self.queue = AdmissionQueue(max_queue=max_queue, free_slots=lambda: sum(not s.busy for s in self.slots))
        self.batch = Batch(ctx.n_batch)
        self.reused_tokens_total = 0
        self.prompt_cache = PromptCache(prompt_cache_bytes)
        self.speculative = speculative
        self.step_cost = StepCost()
        self.spec_draft_total = 0
        self.spec_accepted_total = 0
        self.outbox = Outbox()  # the events of a turn of the loop, delivered together at its end
        self._failure: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"slm-scheduler-{name}", daemon=True)
        self.thread.start()

    # -- called from the event loop -------------------------------------------------
    def submit(self, job: Job) -> None:
        self.queue.submit(job)

    def cancel(self, job: Job) -> None:
        self.queue.cancel(job)

    def stats(self) -> dict[str, float]:
        cells = len(self.slots) * self.ctx.n_ctx_seq
        return {
            "running": sum(s.busy for s in self.slots),
            "waiting": self.queue.depth,
            "slots": len(self.slots),
            "kv_cache_usage_ratio": sum(len(s.cached) for s in self.slots) / cells,
            "prefix_cache_hit_tokens_total": self.reused_tokens_total,
            "prompt_cache_bytes": self.prompt_cache.bytes,
            "prompt_cache_limit_bytes": self.prompt_cache.max_bytes,
            "spec_draft_tokens_total": self.spec_draft_total,
            "spec_accepted_tokens_total": self.spec_accepted_total,
        }

    def slot_states(self) -> list[dict[str, int | bool]]:
        return [{"id": s.seq, "busy": s.busy, "cached_tokens": len(s.cached), "generated": s.generated}
                for s in self.slots]

    def close(self) -> None:
        self.queue.stop()
        self.thread.join()
        self.batch.close()

    @property
    def failure(self) -> str | None:
        """Why the scheduler thread stopped, if it died (the model must be loaded again)."""
        return self._failure

    # -- the scheduler thread ----------------------------------------------------------
    def _run(self) -> None:
        try:
            while self._wait_for_work():
                self._admit()
                self._drop_cancelled()
                if any(s.busy for s in self.slots):
                    self._step()
                self.outbox.flush()
        except BaseException as exc:  # a bug: per-request failures are caught below, never here
            log.exception("scheduler crashed")
            self._failure = f"engine failure: {type(exc).__name__}: {exc}"
            self.queue.stop()  # refuse new work at once; the registry loads the model again
            self._fail_all(self._failure)
        finally:
            self._fail_all("the model was unloaded", reason=FinishReason.CANCELLED)
            self.outbox.flush()

    def _wait_for_work(self) -> bool:
        return self.queue.wait_for_work(lambda: any(s.busy for s in self.slots))

    def _admit(self) -> None:
        while free := [s for s in self.slots if not s.busy]:
            job = self.queue.pop()
            if job is None:
                return
            self._place(job, free)

    def _place(self, job: Job, free: list[Slot]) -> None:
        """Start ``job`` in the free slot sharing the longest prefix. Everything that can refuse
        the request (token ids, the sampler) runs before the slot's cache is touched."""
        prompt = job.request.prompt
        job.outbox = self.outbox
        try:
            check_tokens(prompt, self.model.n_vocab)
            sampler = Sampler(self.model, job.request.sampling, n_ctx=self.ctx.n_ctx_seq)
        except Exception as exc:  # a bad request, or a value llama.cpp's C types refuse
            job.send(_error_event(job, exc.message if isinstance(exc, SlmkitError) else f"bad request: {exc}"))
            return
        slot = max(free, key=lambda s: (common_prefix(s.cached, prompt), -s.last_used))
        scoring = job.request.prompt_logprobs is not None  # every position's logits: nothing is reused
        if not scoring:
            self._use_saved_state(slot, prompt)
        reused = 0 if scoring else min(common_prefix(slot.cached, prompt), len(prompt) - 1)
        if not self.ctx.seq_rm(slot.seq, reused, -1):
            self.ctx.seq_rm(slot.seq, -1, -1)
            reused = 0
        slot.cached = slot.cached[:reused]  # the cells from ``reused`` on were just removed
        slot.start(job, reused, sampler, self.ctx.n_ctx_seq)
        if scoring:
            slot.scores = [first_prompt_token(self.model, prompt[0])]
        slot.spec = SpecState(NgramIndex(prompt)) if self.speculative and job.request.sampling.speculative else None
        self.reused_tokens_total += reused

    def _use_saved_state(self, slot: Slot, prompt: list[int]) -> None:
        """Before the slot's content is overwritten, save it to the host-memory prompt cache; load
        a saved state instead when it shares a longer prefix with the prompt."""
        cache = self.prompt_cache
        if not cache.enabled:
            return
        shared = common_prefix(slot.cached, prompt)
        if len(slot.cached) - shared >= MIN_TOKENS:
            cache.save(self.ctx, slot.seq, slot.cached)
        entry, length = cache.best(prompt)
        if entry is None or length < shared + MIN_TOKENS:
            return
        slot.cached = entry.tokens[:length] if cache.restore(self.ctx, slot.seq, entry, length) else []

    def _drop_cancelled(self) -> None:
        for slot in self.slots:
            if slot.job is not None and slot.job.cancelled:
                slot.job.send(slot.event("", [], FinishReason.CANCELLED))
                slot.release()

    def _step(self) -> None:
        started = time.perf_counter()
        batch = self.batch
        batch.clear()
        active = [s for s in self.slots if s.busy]
        for slot in active:
            slot.batch_index = -1
            if not slot.pending:
                slot.batch_index = batch.add(slot.last_token, len(slot.cached), slot.seq, True)
                slot.cached.append(slot.last_token)
        budget = self.prefill_chunk
        for slot in sorted((s for s in active if s.pending), key=lambda s: s.admitted_at):
            budget -= self._add_prompt_chunk(slot, budget)
        prefill = budget < self.prefill_chunk
        unsplit = True  # steps that llama.cpp splits into several graph evaluations stay out of the cost fit
        if not prefill:  # drafts get the step budget that no prompt chunk used
            unsplit = self._add_drafts(active, budget)
        if batch.n == 0:
            return
        tokens, decode_start = batch.n, time.perf_counter()
        rc = self.ctx.decode(batch)
        decode_s = time.perf_counter() - decode_start
        if rc != 0:
            self._fail_active(active, f"llama_decode failed with code {rc}")
            return
        for slot in active:
            try:
                self._read_outputs(slot)
            except Exception as exc:  # this request fails alone; the others continue
                log.exception("request %s failed", slot.job.request.request_id if slot.job else "?")
                self._fail_slot(slot, exc.message if isinstance(exc, SlmkitError) else f"engine failure: {exc}")
        if not prefill and unsplit:
            self.step_cost.observe(tokens, decode_s, time.perf_counter() - started)

    def _read_outputs(self, slot: Slot) -> None:
        """After a decode: score the slot's prompt rows, then sample its next token (or end a
        scoring request that asked for no tokens)."""
        if slot.score_rows and slot.scores is not None and slot.job is not None:
            slot.scores += score(self.model, self.ctx, slot.score_rows, slot.job.request.prompt_logprobs or 0)
            slot.score_rows = []
        if slot.batch_index < 0 or slot.sampler is None or slot.job is None:
            return
        if slot.job.request.max_tokens == 0:  # the prompt is read (and scored): nothing to generate
            self._finish(slot, "", FinishReason.LENGTH)
        elif slot.spec is not None and slot.spec.draft:
            self._verify(slot, slot.spec)
        else:
            token = slot.sampler.sample(self.ctx, slot.batch_index)
            self._on_token(slot, token, self._logprob(slot, token))

    def _add_drafts(self, active: list[Slot], budget: int) -> bool:
        """Append each speculating slot's draft after its decode token (see speculative.py).
        True if the step is one graph evaluation: its sequences' ids are consecutive and no
        draft sits beside other sequences' tokens (see StepCost.entry)."""
        decoding = [s for s in active if s.batch_index >= 0 and not s.pending]
        drafting = 0
        threshold = self.step_cost.threshold(len(decoding), self.batch.n)
        entry = self.step_cost.entry(len(decoding), self.batch.n)
        for slot in decoding:
            spec, request = slot.spec, slot.job.request if slot.job else None
            if spec is None or request is None:
                continue
            room = self.ctx.n_ctx_seq - len(slot.cached) - 2
            if request.max_tokens is not None:
                room = min(room, request.max_tokens - slot.generated - 1)
            limit = min(room, budget, self.batch.free)
            draft = spec.index.draft(spec.length(threshold, limit, entry, len(decoding)))
            if not draft:
                continue
            spec.draft, spec.draft_at = draft, self.batch.n
            drafting += 1
            spec.drafted += len(draft)
            self.spec_draft_total += len(draft)
            for j, token in enumerate(draft):
                self.batch.add(token, len(slot.cached) + j, slot.seq, True)
            budget -= len(draft)
        return one_graph([s.seq for s in decoding], drafting)

    def _verify(self, slot: Slot, spec: SpecState) -> None:
        """Sample position by position; keep draft tokens while they equal the sampled token,
        then drop the KV cells of the rejected rest."""
        assert slot.sampler is not None
        draft, spec.draft = spec.draft, []
        accepted = 0
        for i in range(len(draft) + 1):
            if i:
                slot.batch_index = spec.draft_at + i - 1
            token = slot.sampler.sample(self.ctx, slot.batch_index)
            hit = i < len(draft) and token == draft[i]
            if hit:
                accepted += 1
                spec.accepted += 1
                self.spec_accepted_total += 1
            self._on_token(slot, token, self._logprob(slot, token))
            if not hit or not slot.busy:
                break
            slot.cached.append(token)  # its KV cells were written by this step
        self.ctx.seq_rm(slot.seq, len(slot.cached), -1)
        spec.verified(len(draft), accepted)

    def _logprob(self, slot: Slot, token: int) -> list[TokenLogprob]:
        assert slot.job is not None
        top_n = slot.job.request.logprobs
        # an end-of-generation token has an entry only when the prompt is scored: a scoring client
        # asks for one token and drops the last entry (lm-eval reads ``token_logprobs[ctxlen:-1]``)
        if top_n is None or (self.model.is_eog(token) and slot.job.request.prompt_logprobs is None):
            return []
        return [token_logprob(self.model, self.ctx, slot.batch_index, token, top_n)]

    def _add_prompt_chunk(self, slot: Slot, budget: int) -> int:
        """Add up to ``budget`` of the slot's unread prompt; returns how many were added."""
        take = min(self.batch.free, len(slot.pending), budget)
        if take <= 0:
            return 0
        chunk, slot.pending = slot.pending[:take], slot.pending[take:]
        start = len(slot.cached)
        prompt = slot.job.request.prompt if slot.job is not None else []
        scoring = slot.scores is not None  # logits at every position, each scoring the next prompt token
        for j, token in enumerate(chunk):
            index = self.batch.add(token, start + j, slot.seq, scoring)
            if scoring and start + j + 1 < len(prompt):
                slot.score_rows.append((index, prompt[start + j + 1]))
        slot.cached.extend(chunk)
        if not slot.pending:
            self.batch.raw.logits[index] = True
            slot.batch_index = index
        return take

    def _on_token(self, slot: Slot, token: int, logprobs: list[TokenLogprob]) -> None:
        if not slot.first_token_at:
            slot.first_token_at = time.perf_counter()
        assert slot.job is not None
        if self.model.is_eog(token):
            slot.generated += 1  # counted, as llama-server, vLLM and Ollama count it; never shown
            self._finish(slot, *slot.end.end(FinishReason.STOP, slot.text.flush()), logprobs=logprobs)
            return
        slot.generated += 1
        text, reason = slot.end.step(slot.text.feed(self.model.piece(token)), slot.generated, len(slot.cached),
                                     slot.text.flush)
        if reason is not None:
            self._finish(slot, text, reason, token, logprobs)
        else:
            slot.last_token = token
            if slot.spec is not None:
                slot.spec.index.push(token)
            event = slot.event(text, [token])
            event.logprobs = logprobs
            slot.job.send(event)

    def _finish(self, slot: Slot, text: str, reason: FinishReason, token: int | None = None,
                logprobs: list[TokenLogprob] | None = None) -> None:
        assert slot.job is not None
        event = slot.event(text, [] if token is None else [token], reason)
        event.logprobs = logprobs or []
        slot.job.send(event)
        if slot.spec is not None:
            log.info("request %s: speculative decoding drafted %d tokens, accepted %d",
                     slot.job.request.request_id or "-", slot.spec.drafted, slot.spec.accepted)
        slot.release()

    def _fail_active(self, active: list[Slot], message: str) -> None:
        log.error(message)
        for slot in active:
            self._fail_slot(slot, message)

    def _fail_slot(self, slot: Slot, message: str) -> None:
        """End the slot's request with an error and forget its cache (its KV may be half written)."""
        if slot.job is not None and not slot.job.done:
            slot.job.send(slot.event("", [], FinishReason.ERROR, error=message))
        slot.release()
        self.ctx.seq_rm(slot.seq, -1, -1)
        slot.cached = []

    def _fail_all(self, message: str, reason: FinishReason = FinishReason.ERROR) -> None:
        for slot in self.slots:
            if slot.job is not None:
                slot.job.send(slot.event("", [], reason, error=message))
                slot.release()
        self.queue.end_all(reason, message)


def _error_event(job: Job, message: str) -> TokenEvent:
    return TokenEvent(finish_reason=FinishReason.ERROR, error=message, prompt_tokens=len(job.request.prompt))

