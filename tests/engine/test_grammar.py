"""JSON-schema grammars: what llama.cpp's grammar sampler accepts inside a string."""

from __future__ import annotations

from collections.abc import Iterator

import llama_cpp as ll
import pytest

from slmkit.engine.llamacpp.bindings import Model
from slmkit.engine.llamacpp.grammar import json_schema_grammar
from slmkit.engine.llamacpp.lazy_grammar import GrammarGate
from slmkit.store.embedded import EMBEDDED

SCHEMA = {"type": "object", "properties": {"text": {"type": "string", "maxLength": 40}, "note": {"type": "string"}},
          "required": ["text", "note"], "additionalProperties": False}


@pytest.fixture(scope="module")
def vocab() -> Iterator[Model]:
    model = Model(EMBEDDED["smollm2-135m-instruct"].path(), vocab_only=True)
    yield model
    model.close()


def allowed_after(model: Model, prefix: str, piece: str) -> bool:
    """Whether the schema's grammar allows ``piece`` (one token) after ``prefix``."""
    gate = GrammarGate(model, json_schema_grammar(SCHEMA))
    try:  # the gate's own check: the grammar sampler applied to that one token
        for token in model.tokenize(prefix, add_special=False, parse_special=False):
            ll.llama_sampler_accept(gate.grammar, token)
        [token] = model.tokenize(piece, add_special=False, parse_special=False)
        return gate._allowed(token)
    finally:
        gate.close()


@pytest.mark.parametrize("prefix", ['{"text": "sea', '{"text": "a", "note": "b'])  # bounded and unbounded strings
def test_strings_take_no_raw_control_characters(vocab: Model, prefix: str) -> None:
    # llama-cpp-python's converter allowed them (its `char` rule was [^"\\]), so a model that
    # wrote a line break inside a string produced text that json.loads rejects
    assert allowed_after(vocab, prefix, " waves")
    assert allowed_after(vocab, prefix, "\\")  # an escape such as \n is fine
    assert not allowed_after(vocab, prefix, "\n")
    assert not allowed_after(vocab, prefix, "\t")


def test_the_grammar_text_excludes_control_characters() -> None:
    grammar = json_schema_grammar(SCHEMA)
    assert r'char ::= [^"\\\x7F\x00-\x1F] |' in grammar
    assert r'char ::= [^"\\] |' not in grammar
