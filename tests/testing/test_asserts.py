"""The output assertions of slmkit.testing, on fixed texts."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from slmkit.testing import assert_json_schema, assert_mentions, assert_not_mentions, extract_json, mentions

SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
          "required": ["name", "age"]}


class Person(BaseModel):
    name: str
    age: int


@pytest.mark.parametrize("text", [
    '{"name": "Ada", "age": 36}',
    'Sure! Here it is:\n```json\n{"name": "Ada", "age": 36}\n```\nAnything else?',
    'The answer is {"name": "Ada", "age": 36} as requested.',
])
def test_json_is_found_in_prose_and_fences(text: str) -> None:
    assert assert_json_schema(text, SCHEMA) == {"name": "Ada", "age": 36}
    assert assert_json_schema(text, Person) == Person(name="Ada", age=36)


def test_json_failures_say_why() -> None:
    with pytest.raises(AssertionError, match="no JSON found"):
        extract_json("no braces here")
    with pytest.raises(AssertionError, match="at age: 'x' is not of type 'integer'"):
        assert_json_schema('{"name": "Ada", "age": "x"}', SCHEMA)
    with pytest.raises(AssertionError, match="not a valid Person"):
        assert_json_schema({"name": "Ada"}, Person)


def test_mentions_ignores_case_accents_punctuation() -> None:
    text = "The capital is PARIS, in France. Café-crème: « très bon »!"
    assert mentions(text, "paris") and mentions(text, "cafe creme") and mentions(text, "tres bon")
    assert not mentions(text, "par")  # whole words only
    assert mentions(text, "fran*") and mentions(text, ("Lyon", "Paris"))
    assert_mentions(text, "Paris", ("France", "French"))
    assert_mentions(text, "Berlin", "Paris", any_of=True)
    assert_not_mentions(text, "Berlin", "London")


def test_mention_failures_name_the_missing_terms() -> None:
    with pytest.raises(AssertionError, match="does not mention 'Berlin'"):
        assert_mentions("Paris is nice", "Paris", "Berlin")
    with pytest.raises(AssertionError, match="mentions none of 'Rome', 'Berlin'"):
        assert_mentions("Paris is nice", "Rome", "Berlin", any_of=True)
    with pytest.raises(AssertionError, match="mentions 'Paris'"):
        assert_not_mentions("Paris is nice", "Paris")
    with pytest.raises(ValueError):
        assert_mentions("text")
