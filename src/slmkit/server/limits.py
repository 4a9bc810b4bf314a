"""Per-key rate limits over a sliding one-minute window, and per-key concurrency."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from slmkit.errors import RateLimited
from slmkit.server.context import Principal

WINDOW_S = 60.0


@dataclass
class _Window:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0
    running: int = 0

    def trim(self, now: float) -> None:
        while self.requests and now - self.requests[0] >= WINDOW_S:
            self.requests.popleft()
        while self.tokens and now - self.tokens[0][0] >= WINDOW_S:
            self.token_sum -= self.tokens.popleft()[1]


class RateLimiter:
    """Requests per minute and tokens per minute (prompt + generated, charged as produced)."""

    def __init__(self, max_concurrent: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_concurrent = max_concurrent
        self._clock = clock
        self._lock = threading.Lock()
        self._usage: dict[str, _Window] = {}

    def admit(self, who: Principal) -> dict[str, str]:
        """Count one request for ``who``, or raise RateLimited. Returns the x-ratelimit headers."""
        key = who.key_id or who.name
        with self._lock:
            now = self._clock()
            usage = self._usage.setdefault(key, _Window())
            usage.trim(now)
            limits = self._headers(who, usage, now)
            if who.rpm is not None and len(usage.requests) >= who.rpm:
                wait = WINDOW_S - (now - usage.requests[0])
                raise RateLimited(f"rate limit reached: {who.rpm} requests per minute", retry_after=wait,
                                  limit_headers=limits)
            if who.tpm is not None and usage.token_sum >= who.tpm:
                wait = WINDOW_S - (now - usage.tokens[0][0])
                raise RateLimited(f"rate limit reached: {who.tpm} tokens per minute", retry_after=wait,
                                  limit_headers=limits)
            if self.max_concurrent is not None and usage.running >= self.max_concurrent:
                raise RateLimited(f"at most {self.max_concurrent} concurrent requests per key", retry_after=1,
                                  limit_headers=limits)
            usage.requests.append(now)
            usage.running += 1
            return self._headers(who, usage, now)

    def release(self, who: Principal) -> None:
        with self._lock:
            usage = self._usage.get(who.key_id or who.name)
            if usage is not None:
                usage.running = max(0, usage.running - 1)

    def charge(self, who: Principal, tokens: int) -> None:
        if who.tpm is None or tokens <= 0:
            return
        with self._lock:
            usage = self._usage.setdefault(who.key_id or who.name, _Window())
            usage.tokens.append((self._clock(), tokens))
            usage.token_sum += tokens

    def _headers(self, who: Principal, usage: _Window, now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        if who.rpm is not None:
            reset = WINDOW_S - (now - usage.requests[0]) if usage.requests else 0.0
            headers |= {"x-ratelimit-limit-requests": str(who.rpm),
                        "x-ratelimit-remaining-requests": str(max(0, who.rpm - len(usage.requests))),
                        "x-ratelimit-reset-requests": f"{math.ceil(reset)}s"}
        if who.tpm is not None:
            reset = WINDOW_S - (now - usage.tokens[0][0]) if usage.tokens else 0.0
            headers |= {"x-ratelimit-limit-tokens": str(who.tpm),
                        "x-ratelimit-remaining-tokens": str(max(0, who.tpm - usage.token_sum)),
                        "x-ratelimit-reset-tokens": f"{math.ceil(reset)}s"}
        return headers
