"""Generated token ids -> the text they add, one token at a time.

Each step decodes the window of tokens since the last emitted piece twice, with and without the
new token, and emits the difference (the way vLLM detokenizes): tokenizers that drop a leading
space or merge bytes across tokens come out as the whole text would. A piece that ends inside a
UTF-8 character is held back until the character is complete. The window starts with the last
prompt tokens, so the first generated token is decoded in context.
"""

from __future__ import annotations

from collections.abc import Callable

_CONTEXT = 4  # prompt tokens kept as context for the first generated token


class IncrementalText:
    def __init__(self, decode: Callable[[list[int]], str], prompt: list[int]) -> None:
        self._decode = decode
        self.ids = list(prompt[-_CONTEXT:])
        self.prefix = 0  # start of the decoded window
        self.read = len(self.ids)  # tokens already turned into text

    def add(self, token: int) -> str:
        """The text ``token`` completes ("" while a character is still incomplete)."""
        self.ids.append(token)
        return self._advance(final=False)

    def flush(self) -> str:
        """What is held back, at the end of the sequence."""
        return self._advance(final=True)

    def _advance(self, *, final: bool) -> str:
        if self.read >= len(self.ids):
            return ""
        before = self._decode(self.ids[self.prefix:self.read])
        after = self._decode(self.ids[self.prefix:])
        if not final and (after.endswith("\ufffd") or len(after) <= len(before)):
            return ""
        piece = after[len(before):]
        self.prefix, self.read = self.read, len(self.ids)
        return piece
