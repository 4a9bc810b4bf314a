"""JSON-schema grammars: what llama.cpp's grammar sampler accepts inside a string, and the limits
on what a schema may ask of the grammar built from it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import llama_cpp as ll
import pytest

from slmkit.engine.llamacpp import grammar
from slmkit.engine.llamacpp.bindings import Model
from slmkit.engine.llamacpp.grammar import json_schema_grammar
from slmkit.engine.llamacpp.lazy_grammar import GrammarGate, check_grammar
from slmkit.errors import InvalidRequest
from slmkit.settings import EngineSettings
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


def _array(n: int) -> dict[str, object]:
    return {"type": "array", "items": {"type": "integer"}, "maxItems": n}


def _nested(depth: int) -> dict[str, object]:
    schema: dict[str, object] = {"type": "integer"}
    for _ in range(depth):
        schema = {"type": "object", "properties": {"a": schema}, "required": ["a"]}
    return schema


@pytest.mark.parametrize(("schema", "words"), [
    (_array(100_000), "maxItems may be at most"),  # segfaulted llama.cpp's grammar parser
    ({"type": "string", "minLength": 5000}, "minLength may be at most"),
    ({"type": "string", "pattern": "^a{100000}$"}, "repetition may be at most"),
    ({"enum": list(range(20_000))}, "enum may list at most"),  # stalled the engine for minutes
    ({"enum": []}, "empty enum"),  # llama.cpp refused the grammar in the scheduler: a 500
    (_nested(100), "nested deeper than"),
])
def test_schemas_past_the_limits_are_400(schema: dict[str, object], words: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        json_schema_grammar(schema, "format")
    assert info.value.param == "format" and words in info.value.message


def test_limits_come_from_settings_and_bound_the_build_time(monkeypatch: pytest.MonkeyPatch) -> None:
    json_schema_grammar(_array(1000))
    json_schema_grammar(_nested(30))
    try:
        grammar.configure(grammar.GrammarLimits.from_settings(EngineSettings(grammar_max_repeat=10)))
        with pytest.raises(InvalidRequest):
            json_schema_grammar(_array(11))
        grammar.configure(grammar.GrammarLimits(timeout_s=0.05))
        convert = grammar._convert
        monkeypatch.setattr(grammar, "_convert", lambda text: time.sleep(0.5) or convert(text))
        with pytest.raises(InvalidRequest) as info:
            json_schema_grammar(_nested(2))
        assert "took more than" in info.value.message
    finally:
        grammar.configure(grammar.GrammarLimits.from_settings(EngineSettings()))


def test_a_grammar_llama_cpp_refuses_is_a_400(vocab: Model) -> None:
    check_grammar(vocab, json_schema_grammar(SCHEMA))
    with pytest.raises(InvalidRequest):
        check_grammar(vocab, "root ::= undefined-rule")
