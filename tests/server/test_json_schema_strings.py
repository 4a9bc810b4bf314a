"""JSON-schema output always parses as JSON: strings never hold raw control characters."""

from __future__ import annotations

import json

import httpx
import openai

from slmkit.engine.llamacpp.grammar import json_schema_grammar
from tests.helpers import ServerProcess

MODEL = "smollm2-135m-instruct"
SCHEMA = {"type": "object",
          "properties": {"text": {"type": "string", "maxLength": 40}, "note": {"type": "string", "maxLength": 20}},
          "required": ["text", "note"], "additionalProperties": False}


def test_grammar_strings_exclude_control_characters() -> None:
    grammar = json_schema_grammar(SCHEMA)
    assert r'char ::= [^"\\\x7F\x00-\x1F] |' in grammar
    assert r'char ::= [^"\\] |' not in grammar


def test_a_model_that_wants_line_breaks_still_writes_valid_json(server: ServerProcess, client: openai.OpenAI) -> None:
    newline = httpx.post(f"{server.url}/tokenize", json={"model": MODEL, "content": "\n"}, timeout=30).json()["tokens"]
    response = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write three short lines about the sea."}], temperature=0,
        max_tokens=80, logit_bias={str(t): 100 for t in newline},  # the model wants a line break at every step
        response_format={"type": "json_schema", "json_schema": {"name": "lines", "schema": SCHEMA, "strict": True}})
    content = response.choices[0].message.content or ""
    assert response.choices[0].finish_reason == "stop"
    assert set(json.loads(content)) == {"text", "note"}  # json.loads rejects raw control characters in strings
