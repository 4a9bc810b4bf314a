"""A host-memory cache of KV states, for prompts that no slot holds any more.

A slot keeps the KV cache of its last sequence (prefix reuse), but with more conversations
than slots each slot is overwritten before its conversation comes back. Before a slot's
content is overwritten, its KV state is copied to host memory here; when a later prompt shares
a longer prefix with a saved state than with any free slot, that state is copied back into the
slot and only the rest of the prompt is read. Like llama-server's ``--cache-ram``. The states
are kept least recently used first within a byte budget.

The budget, unless set (``prompt_cache_mib``), follows from the memory available when the model
loads: a quarter of it, at most 8 GiB (llama-server's ``--cache-ram`` default). llama-server
fixes 8 GiB and, when an allocation fails, cuts its limit to 40% of what it holds; a Python
process that runs out of memory is killed instead, so the budget starts within what is free, and
a state that cannot be allocated halves it.
"""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass, field

import llama_cpp as ll

from slmkit.engine.llamacpp.bindings import Context
from slmkit.engine.llamacpp.slots import common_prefix

log = logging.getLogger("slmkit.engine")
# Saving or restoring costs a copy of the KV state; below this many tokens of gain, reading the
# tokens again is as cheap.
MIN_TOKENS = 32
DEFAULT_MAX_BYTES = 8 * 2**30  # llama-server's --cache-ram default (8192 MiB)
DEFAULT_SHARE = 0.25  # of the memory available at load, for the default budget


def default_budget(available: int) -> int:
    """The prompt cache's byte budget when none is set: a share of ``available``, capped."""
    return max(0, min(DEFAULT_MAX_BYTES, int(available * DEFAULT_SHARE)))


@dataclass(eq=False)
class SavedState:
    tokens: list[int]
    data: bytes
    last_used: float = field(default_factory=time.monotonic)


class PromptCache:
    """Saved KV states by token sequence, within ``max_bytes`` (0: off)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: list[SavedState] = []
        self.bytes = 0
        self.hits = 0

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def best(self, prompt: list[int]) -> tuple[SavedState | None, int]:
        """The saved state sharing the longest prefix with ``prompt``, and that length."""
        best, length = None, 0
        for entry in self.entries:
            n = common_prefix(entry.tokens, prompt)
            if n > length:
                best, length = entry, n
        return best, length

    def save(self, ctx: Context, seq: int, tokens: list[int]) -> None:
        """Copy sequence ``seq`` (holding ``tokens``) to host memory, unless a saved state
        already covers it or it is too short to be worth it."""
        if not self.enabled or len(tokens) < MIN_TOKENS:
            return
        for entry in self.entries:
            if common_prefix(entry.tokens, tokens) == len(tokens):
                entry.last_used = time.monotonic()
                return
        size = int(ll.llama_state_seq_get_size(ctx.ptr, seq))
        if size <= 0 or size > self.max_bytes:
            return
        try:
            buffer = (ctypes.c_uint8 * size)()
        except MemoryError:
            self.max_bytes = max(1, self.max_bytes // 2)
            log.warning("prompt cache: no memory for a %d-byte state; budget cut to %d bytes", size, self.max_bytes)
            self._evict()
            return
        written = int(ll.llama_state_seq_get_data(ctx.ptr, buffer, size, seq))
        if written <= 0:
            return
        # a saved state that this one extends is now redundant
        self._drop([e for e in self.entries if common_prefix(e.tokens, tokens) == len(e.tokens)])
        self.entries.append(SavedState(list(tokens), bytes(buffer)[:written]))
        self.bytes += written
        self._evict()

    def restore(self, ctx: Context, seq: int, entry: SavedState, keep: int) -> bool:
        """Load ``entry`` into sequence ``seq`` and cut it to its first ``keep`` tokens."""
        ctx.seq_rm(seq, -1, -1)
        buffer = (ctypes.c_uint8 * len(entry.data)).from_buffer_copy(entry.data)
        if int(ll.llama_state_seq_set_data(ctx.ptr, buffer, len(entry.data), seq)) <= 0:
            log.warning("could not restore a saved prompt state; reading the prompt instead")
            ctx.seq_rm(seq, -1, -1)
            return False
        if not ctx.seq_rm(seq, keep, -1):
            ctx.seq_rm(seq, -1, -1)
            return False
        entry.last_used = time.monotonic()
        self.hits += 1
        return True

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and self.entries:
            self._drop([min(self.entries, key=lambda e: e.last_used)])

    def _drop(self, entries: list[SavedState]) -> None:
        for entry in entries:
            self.entries.remove(entry)
            self.bytes -= len(entry.data)
