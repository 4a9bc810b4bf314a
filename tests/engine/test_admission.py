"""The admission queue both engines share: bounded FCFS, Overloaded, closing, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from slmkit.engine.admission import AdmissionQueue, Job, JobStream, Outbox
from slmkit.engine.base import FinishReason, GenerationRequest, TokenEvent
from slmkit.errors import Overloaded, ServiceUnavailable


def _job(loop: asyncio.AbstractEventLoop, n: int = 3) -> Job:
    return Job(request=GenerationRequest(prompt=list(range(n))), loop=loop)


async def test_waits_beyond_free_slots_are_bounded() -> None:
    loop = asyncio.get_running_loop()
    free = [2]
    queue = AdmissionQueue(max_queue=1, free_slots=lambda: free[0])
    for _ in range(3):  # 2 free slots + 1 waiting
        queue.submit(_job(loop))
    with pytest.raises(Overloaded) as info:
        queue.submit(_job(loop))
    assert info.value.retry_after == 1 and queue.depth == 3
    free[0] = 3  # a slot freed: one more may wait
    queue.submit(_job(loop))


async def test_closing_refuses_and_ends_the_waiting() -> None:
    loop = asyncio.get_running_loop()
    queue = AdmissionQueue(max_queue=4, free_slots=lambda: 0)
    job = _job(loop)
    queue.submit(job)
    queue.stop()
    with pytest.raises(ServiceUnavailable):
        queue.submit(_job(loop))
    assert queue.wait_for_work(lambda: True) is False
    queue.end_all(FinishReason.CANCELLED, "the model was unloaded")
    event = await asyncio.wait_for(job.events.get(), 5)
    assert event.finish_reason is FinishReason.CANCELLED and event.prompt_tokens == 3 and job.done


async def test_pop_is_fifo_skips_cancelled_and_respects_accept() -> None:
    loop = asyncio.get_running_loop()
    queue = AdmissionQueue(max_queue=8, free_slots=lambda: 0)
    first, second, third = _job(loop), _job(loop, 5), _job(loop)
    for job in (first, second, third):
        queue.submit(job)
    stream = JobStream(first, queue)
    stream.cancel()  # a client that left while waiting
    assert queue.pop(accept=lambda j: len(j.request.prompt) != 5) is None  # `second` stays first in line
    assert (await asyncio.wait_for(first.events.get(), 5)).finish_reason is FinishReason.CANCELLED
    assert queue.pop() is second and queue.pop() is third and queue.pop() is None


async def test_ready_when_full_or_after_the_window() -> None:
    loop = asyncio.get_running_loop()
    queue = AdmissionQueue(max_queue=8, free_slots=lambda: 4)
    assert not queue.ready(4, 10.0, block=False)  # nothing waits
    queue.submit(_job(loop))
    assert not queue.ready(4, 10.0, block=False)  # one of four, the window still open
    for _ in range(3):
        queue.submit(_job(loop))
    assert queue.ready(4, 10.0, block=False)  # a full batch starts at once
    solo = AdmissionQueue(max_queue=8, free_slots=lambda: 4)
    solo.submit(_job(loop))
    assert solo.ready(4, 0.05, block=True)  # the oldest waited out the window


def test_blocking_ready_wakes_when_the_batch_fills() -> None:
    loop = asyncio.new_event_loop()
    try:
        queue = AdmissionQueue(max_queue=8, free_slots=lambda: 2)
        queue.submit(_job(loop))
        timer = threading.Timer(0.05, lambda: queue.submit(_job(loop)))
        timer.start()
        start = time.monotonic()
        assert queue.ready(2, 60.0, block=True)
        assert time.monotonic() - start < 30  # woken by the second submit, not by the window
        timer.join()
    finally:
        loop.close()


async def test_an_outbox_hands_a_step_over_with_one_wake_up_per_loop() -> None:
    """A scheduler step's events for every job on a loop arrive with one call_soon_threadsafe,
    in order per job; a job whose loop is closed is marked cancelled, not raised into the thread."""
    loop = asyncio.get_running_loop()
    outbox = Outbox()
    first, second = _job(loop), _job(loop)
    first.outbox = second.outbox = outbox
    wake_ups: list[str] = []  # the callbacks handed to the loop from another thread
    real = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
        wake_ups.append(getattr(callback, "__name__", ""))
        return real(callback, *args, **kwargs)

    loop.call_soon_threadsafe = counting  # type: ignore[assignment]
    try:
        def step() -> None:  # on a thread, as the scheduler does
            first.send(TokenEvent(text="a"))
            second.send(TokenEvent(text="x"))
            first.send(TokenEvent(text="b", finish_reason=FinishReason.STOP))
            assert first.events.empty() and first.done  # held until the flush
            outbox.flush()

        await asyncio.to_thread(step)
        await asyncio.sleep(0)
    finally:
        del loop.call_soon_threadsafe
    assert wake_ups.count("_deliver") == 1 and "put_nowait" not in wake_ups
    assert [first.events.get_nowait().text for _ in range(2)] == ["a", "b"]
    assert second.events.get_nowait().text == "x" and not outbox.items

    closed = asyncio.new_event_loop()
    closed.close()
    orphan = _job(closed)
    orphan.outbox = outbox
    orphan.send(TokenEvent(text="late"))
    outbox.flush()
    assert orphan.cancelled
