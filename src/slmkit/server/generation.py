"""A started generation: its streams, interleaving, usage counting and collection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from slmkit.engine.base import FinishReason, TokenEvent, TokenEvents
from slmkit.server.context import RequestContext, request_context
from slmkit.server.metrics import RequestObserver


@dataclass
class Generation:
    """Started generations (one per choice) for one API request."""

    id: str
    model: str
    created: int
    prompts: list[list[int]]  # one per input; each has ``n`` choices
    n: int
    streams: list[TokenEvents]  # choice i reads prompts[i // n]
    observer: RequestObserver | None = None
    context: RequestContext = field(default_factory=request_context)

    @property
    def prompt_tokens(self) -> int:
        return sum(len(p) for p in self.prompts)

    def usage(self) -> TokenCounts:
        return TokenCounts(self)

    def cancel(self) -> None:
        for stream in self.streams:
            stream.cancel()

    async def events(self) -> AsyncIterator[tuple[int, TokenEvent]]:
        """All choices' events, interleaved as they arrive, tagged with the choice index;
        metrics and the request's token accounting are updated on the way."""
        try:
            async for index, event in self._interleaved():
                new = self.observer.on_event(index, event) if self.observer else event.completion_tokens
                self.context.add_output(new, event.text)
                yield index, event
        finally:  # a client that went away: its unfinished choices count as aborted
            if self.observer is not None:
                self.observer.close()

    async def _interleaved(self) -> AsyncIterator[tuple[int, TokenEvent]]:
        if len(self.streams) == 1:
            async for event in self.streams[0]:
                yield 0, event
            return
        queue: asyncio.Queue[tuple[int, TokenEvent | None]] = asyncio.Queue()

        async def pump(index: int, stream: TokenEvents) -> None:
            async for event in stream:
                await queue.put((index, event))
            await queue.put((index, None))

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(self.streams)]
        try:
            remaining = len(tasks)
            while remaining:
                index, item = await queue.get()
                if item is None:
                    remaining -= 1
                else:
                    yield index, item
        finally:
            for task in tasks:
                task.cancel()
            self.cancel()


class PromptOnly:
    """The events of a choice that generates nothing and scores nothing (``max_tokens`` 0 with
    echo): one final event, without a trip to the engine."""

    def __init__(self, prompt: list[int]) -> None:
        self._prompt_tokens = len(prompt)

    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[TokenEvent]:
        yield TokenEvent(finish_reason=FinishReason.LENGTH, prompt_tokens=self._prompt_tokens)

    def cancel(self) -> None:
        pass


class TokenCounts:
    """Token counts of a generation, gathered from each choice's latest event.

    The prompt counts once per input however many choices read it, as OpenAI counts it."""

    def __init__(self, generation: Generation) -> None:
        self._generation = generation
        self._completion = [0] * len(generation.streams)
        self._cached = [0] * len(generation.streams)

    def add(self, index: int, event: TokenEvent) -> None:
        self._completion[index] = event.completion_tokens
        self._cached[index] = event.cached_tokens

    @property
    def prompt_tokens(self) -> int:
        return self._generation.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return sum(self._completion)

    @property
    def cached_tokens(self) -> int:
        n = self._generation.n
        return sum(max(self._cached[i:i + n]) for i in range(0, len(self._cached), n))
