"""Grammars (GBNF) that constrain generation to JSON: any object, or a JSON schema."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import jsonschema
from llama_cpp.llama_grammar import json_schema_to_gbnf

from slmkit.engine.llamacpp.refs import with_local_refs
from slmkit.errors import InvalidRequest
from slmkit.settings import EngineSettings


@dataclass(frozen=True)
class GrammarLimits:
    """What a JSON schema may ask of the grammar built from it (see EngineSettings.grammar_*):
    repetition bounds expand into that many nested rules (llama.cpp crashed on 100,000), each
    enum value is an alternative checked at every step where one may start, and a deep schema
    recurses in the converter."""

    max_repeat: int = 1000
    max_enum: int = 256
    max_depth: int = 64
    max_bytes: int = 256 * 1024
    timeout_s: float = 5.0

    @classmethod
    def from_settings(cls, engine: EngineSettings) -> GrammarLimits:
        return cls(max_repeat=engine.grammar_max_repeat, max_enum=engine.grammar_max_enum,
                   max_depth=engine.grammar_max_depth, max_bytes=engine.grammar_max_bytes,
                   timeout_s=engine.grammar_timeout_s)


_limits = GrammarLimits.from_settings(EngineSettings())
_builder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="slm-grammar")
_REPEAT_KEYS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties",
                "minContains", "maxContains")
_BRACES = re.compile(r"\{\s*(\d+)\s*(?:,\s*(\d*)\s*)?\}")


def configure(limits: GrammarLimits) -> None:
    """Set the limits every later grammar is built under (the server does it at start)."""
    global _limits
    _limits = limits


def limits() -> GrammarLimits:
    return _limits

# Any JSON object. The root ends right after the closing brace, so once the object is
# complete only an end-of-generation token is allowed and generation stops there.
JSON_OBJECT_GBNF = r"""
root    ::= object
value   ::= object | array | string | number | "true" | "false" | "null"
object  ::= "{" ws ( member ( "," ws member )* )? ws "}"
member  ::= ws string ws ":" ws value
array   ::= "[" ws ( value ws ( "," ws value ws )* )? "]"
string  ::= "\"" ( [^"\\\x7F\x00-\x1F] | "\\" ( ["\\/bfnrt] | "u" [0-9a-fA-F]{4} ) )* "\""
number  ::= "-"? ( "0" | [1-9] [0-9]{0,15} ) ( "." [0-9]{1,16} )? ( [eE] [-+]? [0-9]{1,3} )?
ws      ::= ( " " | "\n" [ \t]{0,8} )?
"""


def json_object_grammar() -> str:
    return JSON_OBJECT_GBNF


def check_schema(schema: Any, param: str) -> dict[str, Any]:
    """Reject anything that is not a valid JSON schema (draft 2020-12), naming ``param``."""
    if not isinstance(schema, dict):
        raise InvalidRequest(f"{param} must be a JSON schema object", param=param)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"{param} is not a valid JSON schema: {exc.message}", param=param) from exc
    return schema


# llama-cpp-python's converter lets a string hold raw control characters (a line break, a tab),
# which JSON forbids: its ``char`` rule is ``[^"\\]``. llama.cpp's own converter excludes them.
LOOSE_CHAR = r'char ::= [^"\\] |'
JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


def json_schema_grammar(schema: dict[str, Any], param: str = "response_format", *, refs_local: bool = False) -> str:
    """GBNF for documents that match ``schema``; 400 naming ``param`` if it cannot be built
    within the limits (see GrammarLimits). Strings hold no raw control characters, so the
    output always parses as JSON. References are localized first (see ``refs``) unless the
    caller did that already (``refs_local``)."""
    bounds = _limits
    check_bounds(schema, bounds, param)
    check_schema(schema, param)
    if not refs_local:
        schema = with_local_refs(schema, "d", param)
    text = json.dumps(schema)
    if len(text) > bounds.max_bytes:
        raise InvalidRequest(f"{param}: the JSON schema is larger than {bounds.max_bytes} bytes", param=param)
    future = _builder.submit(_convert, text)
    try:
        grammar = future.result(timeout=bounds.timeout_s)
    except FutureTimeout as exc:
        raise InvalidRequest(f"{param}: turning this JSON schema into a grammar took more than "
                             f"{bounds.timeout_s:g} s; simplify it", param=param) from exc
    except (ValueError, KeyError, TypeError, NotImplementedError, RecursionError, AttributeError,
            AssertionError) as exc:  # the converter asserts on keywords it does not know ("Unrecognized schema")
        raise InvalidRequest(f"{param}: this JSON schema cannot be turned into a grammar: {exc}",
                             param=param) from exc
    if len(grammar) > bounds.max_bytes:
        raise InvalidRequest(f"{param}: the grammar for this JSON schema is larger than {bounds.max_bytes} "
                             "bytes; lower its repetition bounds or enum sizes", param=param)
    return grammar


def _convert(text: str) -> str:
    return str(json_schema_to_gbnf(text)).replace(LOOSE_CHAR, JSON_CHAR)


def check_bounds(schema: Any, bounds: GrammarLimits, param: str) -> None:
    """400 naming ``param`` for a schema deeper, with larger repetition bounds or larger enums
    than ``bounds`` allow, or with an empty enum (no document can match it)."""
    stack: list[tuple[Any, int]] = [(schema, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > bounds.max_depth and isinstance(node, dict | list):
            raise InvalidRequest(f"{param}: the JSON schema is nested deeper than {bounds.max_depth} levels",
                                 param=param)
        if isinstance(node, list):
            stack.extend((item, depth + 1) for item in node)
            continue
        if not isinstance(node, dict):
            continue
        _check_node(node, bounds, param)
        stack.extend((value, depth + 1) for key, value in node.items() if key not in ("enum", "const"))


def _check_node(node: dict[str, Any], bounds: GrammarLimits, param: str) -> None:
    for key in _REPEAT_KEYS:
        value = node.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > bounds.max_repeat:
            raise InvalidRequest(f"{param}: {key} may be at most {bounds.max_repeat} (a grammar is built "
                                 "for it)", param=param)
    enum = node.get("enum")
    if isinstance(enum, list):
        if not enum:
            raise InvalidRequest(f"{param}: an empty enum matches nothing", param=param)
        if len(enum) > bounds.max_enum:
            raise InvalidRequest(f"{param}: an enum may list at most {bounds.max_enum} values", param=param)
    pattern = node.get("pattern")
    if isinstance(pattern, str):
        for low, high in _BRACES.findall(pattern):
            if any(len(n) > 9 or int(n) > bounds.max_repeat for n in (low, high) if n):
                raise InvalidRequest(f"{param}: a pattern's repetition may be at most {bounds.max_repeat}",
                                     param=param)
