"""Grammar-constrained sampling that checks one token, not the whole vocabulary, per step.

Applying a GBNF grammar to every candidate costs a pass over the vocabulary each step
(hundreds of milliseconds for a JSON grammar over SmolLM2's 49k tokens). Like llama.cpp's
common sampler, GrammarGate samples without the grammar first and asks the grammar about
that one token; only when it is rejected does the grammar mask the whole vocabulary and the
chain sample again. The result is the same token the masked distribution would give for
greedy decoding, and a token from the masked distribution otherwise.

A token the grammar does not allow is never accepted: llama.cpp throws (or aborts) on one, and a
C++ exception through ctypes ends the process. When the masked pick is still refused (the
document is complete and only an end-of-generation token is left, which ``ignore_eos`` or a
``logit_bias`` bans), the sequence ends there if the grammar allows its end, else the request
fails alone.
"""

from __future__ import annotations

import ctypes
import math
from typing import Any

import llama_cpp as ll
import numpy as np

from slmkit.engine.llamacpp.bindings import Context, Model
from slmkit.errors import InvalidRequest

# llama_token_data: {int32 id; float logit; float p}
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])


class GrammarGate:
    """Owns one grammar sampler; ``sample`` picks a token the grammar allows and accepts it."""

    def __init__(self, model: Model, grammar: str) -> None:
        self.grammar = ll.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
        if not self.grammar:
            raise InvalidRequest("the grammar could not be parsed", param="response_format")
        self.n_vocab = model.n_vocab
        self.eog = model.eog_tokens
        self._ids = np.arange(self.n_vocab, dtype="<i4")
        self._cells = np.zeros(self.n_vocab, dtype=_TOKEN_DATA)
        self._one = np.zeros(1, dtype=_TOKEN_DATA)

    def sample(self, chain: Any, ctx: Context, index: int) -> int:
        logits = np.ctypeslib.as_array(ctx.logits(index), shape=(self.n_vocab,))
        token = self._pick(chain, logits, masked=False)
        if not self._allowed(token):
            token = self._pick(chain, logits, masked=True)
            if not self._allowed(token):
                return self._end()
        ll.llama_sampler_accept(self.grammar, token)
        ll.llama_sampler_accept(chain, token)
        return token

    def _pick(self, chain: Any, logits: np.ndarray, *, masked: bool) -> int:
        cells = self._cells
        cells["id"] = self._ids
        cells["logit"] = logits
        cells["p"] = 0.0
        array = _array(cells)
        if masked:
            ll.llama_sampler_apply(self.grammar, ctypes.byref(array))
        ll.llama_sampler_apply(chain, ctypes.byref(array))
        if not 0 <= array.selected < len(cells):  # nothing left to pick
            return -1
        return int(array.data[array.selected].id)

    def _allowed(self, token: int) -> bool:
        if not 0 <= token < self.n_vocab:
            return False
        self._one[0] = (token, 0.0, 0.0)
        array = _array(self._one)
        ll.llama_sampler_apply(self.grammar, ctypes.byref(array))
        return not math.isinf(float(self._one["logit"][0]))

    def _end(self) -> int:
        """An end-of-generation token when the grammar allows the document to end here (it is
        not accepted: the sequence stops at it), else an error for this request alone."""
        for token in self.eog:
            if self._allowed(token):
                return token
        raise InvalidRequest("no token satisfies both the grammar and the logit_bias", param="logit_bias")

    def close(self) -> None:
        if self.grammar:
            ll.llama_sampler_free(self.grammar)
            self.grammar = None


def _array(cells: np.ndarray) -> Any:
    data = ctypes.cast(cells.ctypes.data, ctypes.POINTER(ll.llama_token_data))
    return ll.llama_token_data_array(data=data, size=len(cells), selected=-1, sorted=False)


def check_grammar(model: Model, grammar: str, param: str = "response_format") -> None:
    """400 unless llama.cpp accepts ``grammar`` (parsed here, in the request's path, so that a
    refused grammar never reaches a slot)."""
    parsed = ll.llama_sampler_init_grammar(model.vocab, grammar.encode(), b"root")
    if not parsed:
        raise InvalidRequest("the grammar could not be built (llama.cpp refused it: an empty enum, or rules "
                             "too large?)", param=param)
    ll.llama_sampler_free(parsed)
