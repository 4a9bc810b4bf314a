"""Admission shared by every generation engine: jobs, the bounded FCFS wait queue, and the
event stream a caller reads.

An engine's scheduler thread owns its slots; the event loop only submits and cancels. The rules
are the same for every engine, so limits, metrics and drain behave alike:

- a request is admitted at once when a slot is free, else it waits in FIFO order;
- at most ``max_queue`` requests wait beyond the free slots: one more gets ``Overloaded``
  (429/503 with ``Retry-After``) before any response starts;
- once the model is closing, ``ServiceUnavailable``; whatever still waits is ended.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from slmkit.engine.base import FinishReason, GenerationRequest, TokenEvent
from slmkit.errors import InvalidRequest, Overloaded, ServiceUnavailable


@dataclass(eq=False)
class Job:
    """A request travelling from the event loop to the scheduler thread and back."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue[TokenEvent] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    done: bool = False
    enqueued_at: float = field(default_factory=time.perf_counter)
    outbox: Outbox | None = None  # set by a scheduler that hands over a step's events at once

    def send(self, event: TokenEvent) -> None:
        """Hand an event to the job's event loop (called from the scheduler thread)."""
        if event.finish_reason is not None:
            self.done = True
        if self.outbox is not None:
            self.outbox.put(self, event)
            return
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the caller's event loop is closed: nobody reads this job any more
            self.cancelled = True

    def end(self, reason: FinishReason, error: str | None = None) -> None:
        """The final event of a job that never reached a slot."""
        self.send(TokenEvent(finish_reason=reason, prompt_tokens=len(self.request.prompt),
                             error=error if reason is FinishReason.ERROR else None))


class Outbox:
    """The events of a scheduler's step, handed to each event loop with one wake-up (one
    ``call_soon_threadsafe``) instead of one per token: each wake-up writes to the loop's self-pipe
    and trades the GIL with its thread. Order is kept per job."""

    def __init__(self) -> None:
        self.items: list[tuple[Job, TokenEvent]] = []

    def put(self, job: Job, event: TokenEvent) -> None:
        self.items.append((job, event))

    def flush(self) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Job, TokenEvent]]] = {}
        for job, event in self.items:
            by_loop.setdefault(job.loop, []).append((job, event))
        self.items = []
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_deliver, items)
            except RuntimeError:  # that event loop is closed: nobody reads these jobs any more
                for job, _ in items:
                    job.cancelled = True


def _deliver(items: list[tuple[Job, TokenEvent]]) -> None:
    for job, event in items:
        job.events.put_nowait(event)


class AdmissionQueue:
    """The bounded FCFS queue in front of a model's slots, and the condition its scheduler
    thread sleeps on. ``free_slots`` tells how many slots could take a job right now."""

    def __init__(self, *, max_queue: int, free_slots: Callable[[], int]) -> None:
        self.max_queue = max_queue
        self.free_slots = free_slots
        self.waiting: deque[Job] = deque()
        self.cond = threading.Condition()
        self.stopping = False

    # -- the event loop side ---------------------------------------------------------
    def submit(self, job: Job) -> None:
        """Queue the job, or raise at once: ``ServiceUnavailable`` when closing,
        ``Overloaded`` when ``max_queue`` jobs already wait beyond the free slots."""
        with self.cond:
            if self.stopping:
                raise ServiceUnavailable("the model is shutting down")
            if len(self.waiting) >= self.free_slots() + self.max_queue:
                raise Overloaded(f"server busy: {self.max_queue} requests already waiting", retry_after=1)
            self.waiting.append(job)
            self.cond.notify()

    def cancel(self, job: Job) -> None:
        """Mark the job cancelled; the scheduler ends it at its next step (or when popped)."""
        job.cancelled = True
        self.wake()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify()

    def stop(self) -> None:
        """Refuse new jobs and wake the scheduler so that it can exit."""
        with self.cond:
            self.stopping = True
            self.cond.notify()

    @property
    def depth(self) -> int:
        return len(self.waiting)

    # -- the scheduler thread side ---------------------------------------------------
    def wait_for_work(self, busy: Callable[[], bool]) -> bool:
        """Sleep until a job waits or ``busy()``; False once the queue is stopping."""
        with self.cond:
            while not self.stopping and not self.waiting and not busy():
                self.cond.wait()
            return not self.stopping

    def ready(self, count: int, window: float, *, block: bool) -> bool:
        """Whether a batch of up to ``count`` jobs should start now: ``count`` jobs wait, or the
        oldest has waited ``window`` seconds (a batch window, like a dynamic batcher's queue
        delay). With ``block``, sleep until one of the two holds (False if the queue empties
        or stops)."""
        with self.cond:
            while not self.stopping and self.waiting:
                if len(self.waiting) >= count:
                    return True
                left = self.waiting[0].enqueued_at + window - time.perf_counter()
                if left <= 0:
                    return True
                if not block:
                    return False
                self.cond.wait(left)
            return False

    def pop(self, accept: Callable[[Job], bool] | None = None) -> Job | None:
        """The next job that is still wanted, if ``accept`` takes it (else it stays first in
        line); cancelled jobs met on the way get their final event here."""
        while True:
            with self.cond:
                if not self.waiting:
                    return None
                job = self.waiting[0]
                if not job.cancelled and accept is not None and not accept(job):
                    return None
                self.waiting.popleft()
            if not job.cancelled:
                return job
            job.end(FinishReason.CANCELLED)

    def end_all(self, reason: FinishReason, message: str) -> None:
        """End every waiting job (the model failed or is unloading)."""
        with self.cond:
            waiting, self.waiting = list(self.waiting), deque()
        for job in waiting:
            job.end(reason, message)


class Canceller(Protocol):
    """What an JobStream needs from its scheduler."""

    def cancel(self, job: Job) -> None: ...


class JobStream:
    """The events of one submitted request. Closing it early cancels the request;
    ``interrupt(reason)`` ends it at once with a final event that carries the reason."""

    def __init__(self, job: Job, scheduler: Canceller) -> None:
        self._job = job
        self._scheduler = scheduler
        self._last = TokenEvent(prompt_tokens=len(job.request.prompt))
        self._interrupt: TokenEvent | None = None
        with _LIVE_LOCK:
            _LIVE.add(self)

    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[TokenEvent]:
        try:
            while True:
                event = await self._job.events.get()
                if event is self._interrupt:
                    event = self._final(event.error or "interrupted")
                self._last = event
                yield event
                if event.finish_reason is not None:
                    return
        finally:
            with _LIVE_LOCK:
                _LIVE.discard(self)
            self.cancel()

    def cancel(self) -> None:
        if not self._job.done:
            self._scheduler.cancel(self._job)

    def interrupt(self, reason: str) -> bool:
        """End the stream now (from any thread): after the events already handed over, a final
        one with ``finish_reason`` LENGTH and ``error=reason``; the slot is freed. False if the
        stream had already ended."""
        if self._job.done or self._interrupt is not None:
            return False
        self._interrupt = TokenEvent(finish_reason=FinishReason.LENGTH, error=reason)
        self._job.loop.call_soon_threadsafe(self._job.events.put_nowait, self._interrupt)
        self.cancel()
        return True

    def _final(self, reason: str) -> TokenEvent:
        last = self._last
        return TokenEvent(finish_reason=FinishReason.LENGTH, error=reason, prompt_tokens=last.prompt_tokens,
                          completion_tokens=last.completion_tokens, cached_tokens=last.cached_tokens,
                          timings=dict(last.timings))


_LIVE: weakref.WeakSet[JobStream] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def interrupt_streams(reason: str) -> int:
    """End every running stream of every engine in this process with a final event carrying
    ``reason`` (the drain deadline, a second SIGTERM); encoders render it as a last chunk and an
    error frame. Thread-safe. Returns how many streams it ended."""
    with _LIVE_LOCK:
        streams = list(_LIVE)
    return sum(stream.interrupt(reason) for stream in streams)


def check_tokens(prompt: list[int], n_vocab: int, param: str = "prompt") -> None:
    """400 naming ``param`` unless every id is in the vocabulary (a bad id fails the whole
    decode batch, every other request in it too). ``n_vocab`` 0: unknown, only negatives fail."""
    if not prompt:
        raise InvalidRequest(f"the {param} is empty", param=param)
    low, high = min(prompt), max(prompt)
    if low < 0 or 0 < n_vocab <= high:
        bad = low if low < 0 else high
        raise InvalidRequest(f"the {param} holds token id {bad}, outside the vocabulary (0..{n_vocab - 1})",
                             param=param)
