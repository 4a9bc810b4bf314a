"""Keeps a model's native memory alive while a request thread uses it.

Prompts are tokenized (and grammars checked) in worker threads, off the event loop, while the
registry may unload the same model (its keep-alive ran out). Freeing a vocabulary that another
thread is reading crashes the process, so every use outside the scheduler thread holds a
``Lifetime.use()``; ``close()`` refuses new uses and waits for the running ones to end. A use
after close is a retryable 503, never a crash. ``in_use`` stays true for a moment after a use
ends, so the registry does not unload the model in the gap before the request's next step.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from slmkit.errors import ServiceUnavailable

GRACE_S = 1.0


class Lifetime:
    def __init__(self, name: str) -> None:
        self.name = name
        self._cond = threading.Condition()
        self._users = 0
        self._closed = False
        self._released = float("-inf")

    @contextmanager
    def use(self) -> Iterator[None]:
        with self._cond:
            if self._closed:
                raise ServiceUnavailable(f"the model '{self.name}' was unloaded; try again", retry_after=1)
            self._users += 1
        try:
            yield
        finally:
            with self._cond:
                self._users -= 1
                self._released = time.monotonic()
                self._cond.notify_all()

    @property
    def in_use(self) -> bool:
        return self._users > 0 or time.monotonic() - self._released < GRACE_S

    def close(self) -> None:
        """Refuse new uses and wait until the running ones have ended."""
        with self._cond:
            self._closed = True
            while self._users:
                self._cond.wait()
