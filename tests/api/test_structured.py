"""Structured output through the Python API: pydantic classes and JSON schemas, validated."""

from __future__ import annotations

import jsonschema
import pytest
from pydantic import BaseModel, Field

import slmkit
from slmkit.errors import OutputInvalid


class Address(BaseModel):
    city: str
    country: str


class Person(BaseModel):
    name: str
    age: int
    address: Address  # a nested model: the schema has $defs and $ref
    languages: list[str] = Field(max_length=3)  # maxItems bounds the grammar: no endless list


def test_pydantic_class_gives_a_validated_instance(model: slmkit.Model) -> None:
    out = model.chat("Invent a person who lives in Lyon, France, and give their details.",
                     response_format=Person, max_tokens=120, temperature=0.0)
    assert isinstance(out.parsed, Person) and isinstance(out.parsed.address, Address)
    assert Person.model_validate_json(out.text) == out.parsed


def test_parse_returns_the_instance(model: slmkit.Model) -> None:
    person = model.parse("Invent a person and give their details.", Person, max_tokens=120, temperature=0.0)
    assert isinstance(person, Person)


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]},
    {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]},
                                      "sure": {"type": "boolean"}}, "required": ["colour", "sure"]},
])
def test_json_schema_gives_a_valid_dict(model: slmkit.Model, schema: dict[str, object]) -> None:
    out = model.chat("Answer as JSON: what is 2 + 3, or which colour is the sky?", response_format=schema,
                     max_tokens=60, temperature=0.0)
    jsonschema.validate(out.parsed, schema)


def test_json_object_mode(model: slmkit.Model) -> None:
    out = model.chat('Reply with a JSON object with the keys "name" and "sound" for a cat.',
                     response_format={"type": "json_object"}, max_tokens=60, temperature=0.0)
    assert isinstance(out.parsed, dict)


def test_cut_output_raises_output_invalid(model: slmkit.Model) -> None:
    with pytest.raises(OutputInvalid, match="max_tokens"):
        model.chat("Invent a person.", response_format=Person, max_tokens=4, temperature=0.0)


def test_tools_and_response_format_do_not_mix(model: slmkit.Model) -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    with pytest.raises(slmkit.InvalidRequest, match="cannot be combined"):
        model.chat("hi", response_format=Person, tools=[tool])
