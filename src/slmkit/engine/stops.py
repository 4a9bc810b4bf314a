"""Where a sequence ends, for every engine: stop strings (held back until safe), max tokens,
the context's end, and UTF-8 reassembly of token pieces."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Sequence

from slmkit.engine.base import FinishReason


class SequenceEnd:
    """The end-of-sequence rules of one request, shared by the llama.cpp and ONNX schedulers:
    a stop string ends it (``stop``), so do ``max_tokens`` generated tokens or a full context
    (``length``); an end-of-generation token ends it through ``end``."""

    def __init__(self, stop: Sequence[str], max_tokens: int | None, context_length: int) -> None:
        self.stops = StopMatcher(stop)
        self.max_tokens = max_tokens
        self.context_length = context_length

    def step(self, text: str, generated: int, held: int,
             flush: Callable[[], str] = str) -> tuple[str, FinishReason | None]:
        """Feed one token's text, ``generated`` tokens so far and ``held`` in the cache; returns
        the text safe to show and the finish reason, if the sequence ends here. ``flush``
        releases what the caller's decoder still holds back; called only if the sequence ends."""
        out, hit = self.stops.feed(text)
        if hit:
            return out, FinishReason.STOP
        if (self.max_tokens is not None and generated >= self.max_tokens) or held + 1 >= self.context_length:
            rest, reason = self.end(FinishReason.LENGTH, flush())
            return out + rest, reason
        return out, None

    def end(self, reason: FinishReason, tail: str = "") -> tuple[str, FinishReason]:
        """The sequence ends for ``reason``: flush ``tail`` and the held-back text (a stop
        string completed by the tail still wins)."""
        out, hit = self.stops.feed(tail)
        if hit:
            return out, FinishReason.STOP
        return out + self.stops.flush(), reason


class StopMatcher:
    """Feeds generated text through and cuts it at the first stop string.

    Text that could still be the start of a stop string is held back, so a stop string
    split over several tokens never reaches the client.
    """

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.matched: str | None = None  # the stop string that cut the text, once one has
        self._pending = ""

    def feed(self, text: str) -> tuple[str, bool]:
        """Return (text safe to emit, whether a stop string matched)."""
        if not self.stops:
            return text, False
        buf = self._pending + text
        hits = [(at, len(s), s) for s in self.stops if (at := buf.find(s)) >= 0]
        if hits:
            cut, _, self.matched = min(hits)
            self._pending = ""
            return buf[:cut], True
        hold = max((self._overlap(buf, s) for s in self.stops), default=0)
        self._pending = buf[len(buf) - hold :] if hold else ""
        return buf[: len(buf) - hold], False

    def flush(self) -> str:
        """Release what was held back (the sequence ended without a match)."""
        out, self._pending = self._pending, ""
        return out

    @staticmethod
    def _overlap(buf: str, stop: str) -> int:
        for k in range(min(len(stop) - 1, len(buf)), 0, -1):
            if buf.endswith(stop[:k]):
                return k
        return 0


class Utf8Stream:
    """Turns token byte pieces into text, holding back incomplete UTF-8 sequences."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, piece: bytes) -> str:
        return self._decoder.decode(piece)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
