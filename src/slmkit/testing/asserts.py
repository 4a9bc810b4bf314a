"""Assertions on model output that hold up to the small variations of a language model:
JSON that may come wrapped in prose or code fences, words in any case or inflection of
punctuation and spacing."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import jsonschema
from pydantic import BaseModel, ValidationError

# temperature 0 is greedy decoding: the same prompt gives the same answer on the same model and
# build, whatever runs beside it. The seed matters only when a test samples.
DETERMINISTIC: Mapping[str, Any] = {"temperature": 0.0, "seed": 0}

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
Term = str | tuple[str, ...]


def extract_json(text: str) -> Any:
    """The JSON value in ``text``: the whole text, else a fenced code block, else the first
    balanced object or array. Raises ``AssertionError`` naming the text when there is none."""
    candidates = [text.strip(), *(m.group(1).strip() for m in _FENCE.finditer(text))]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            return decoder.raw_decode(text[match.start():])[0]
        except ValueError:
            continue
    raise AssertionError(f"no JSON found in the model's output: {_excerpt(text)}")


def assert_json_schema(output: Any, schema: Mapping[str, Any] | type[BaseModel]) -> Any:
    """Check that ``output`` (model text, or an already parsed value) holds JSON valid against
    ``schema`` (a JSON schema or a pydantic model class); return the parsed value (a model
    instance for a pydantic class)."""
    value = extract_json(output) if isinstance(output, str) else output
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        try:
            return schema.model_validate(value)
        except ValidationError as exc:
            raise AssertionError(f"output is not a valid {schema.__name__}: {exc.errors()[0]['msg']} "
                                 f"at {'.'.join(map(str, exc.errors()[0]['loc'])) or 'the top'}; got "
                                 f"{_excerpt(json.dumps(value))}") from None
    try:
        jsonschema.validate(value, dict(schema))
    except jsonschema.ValidationError as exc:
        where = "/".join(map(str, exc.absolute_path)) or "the top"
        raise AssertionError(f"output does not match the schema at {where}: {exc.message}; got "
                             f"{_excerpt(json.dumps(value))}") from None
    return value


def normalize(text: str) -> str:
    """Case-folded, accents and punctuation removed, whitespace collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()
    return " ".join(re.sub(r"[^\w]+", " ", plain).split())


def mentions(text: str, term: Term) -> bool:
    """Whether ``text`` mentions ``term`` (or one of a tuple of alternatives) as whole words,
    ignoring case, accents, punctuation and spacing; a trailing ``*`` matches any word ending
    (``"summar*"`` matches "summary" and "summarize")."""
    alternatives = (term,) if isinstance(term, str) else term
    haystack = f" {normalize(text)} "
    for alternative in alternatives:
        stem = alternative.endswith("*")
        needle = normalize(alternative.rstrip("*"))
        if not needle:
            continue
        ending = r"\w*" if stem else ""
        pattern = rf"(?<!\w){re.escape(needle)}{ending}(?!\w)"
        if re.search(pattern, haystack):
            return True
    return False


def assert_mentions(text: str, *terms: Term, any_of: bool = False) -> None:
    """Check that ``text`` mentions every term (or, with ``any_of=True``, at least one). A term is
    a word or phrase, or a tuple of alternatives: ``assert_mentions(answer, "Paris", ("France",
    "French"))``. See ``mentions`` for how words are matched."""
    if not terms:
        raise ValueError("assert_mentions needs at least one term")
    missing = [t for t in terms if not mentions(text, t)]
    if any_of and len(missing) < len(terms):
        return
    if missing and not any_of:
        raise AssertionError(f"the output does not mention {_names(missing)}: {_excerpt(text)}")
    if any_of:
        raise AssertionError(f"the output mentions none of {_names(terms)}: {_excerpt(text)}")


def assert_not_mentions(text: str, *terms: Term) -> None:
    """Check that ``text`` mentions none of the terms (matched as in ``mentions``)."""
    found = [t for t in terms if mentions(text, t)]
    if found:
        raise AssertionError(f"the output mentions {_names(found)}: {_excerpt(text)}")


def _names(terms: Any) -> str:
    return ", ".join(" / ".join(t) if isinstance(t, tuple) else repr(t) for t in terms)


def _excerpt(text: str, limit: int = 300) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")
