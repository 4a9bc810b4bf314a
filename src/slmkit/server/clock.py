"""Time, injectable: keep-alive deadlines, key expiry and rate windows read it, so tests move
it forward instead of sleeping."""

from __future__ import annotations

import time


class Clock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()


SYSTEM_CLOCK = Clock()
