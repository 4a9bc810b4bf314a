"""Grammars (GBNF) that constrain generation to JSON: any object, or a JSON schema."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from llama_cpp.llama_grammar import json_schema_to_gbnf

from slmkit.errors import InvalidRequest

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


def json_schema_grammar(schema: dict[str, Any], param: str = "response_format") -> str:
    """GBNF for documents that match ``schema``; 400 naming ``param`` if it cannot be built.
    Strings hold no raw control characters, so the output always parses as JSON."""
    check_schema(schema, param)
    try:
        return str(json_schema_to_gbnf(json.dumps(schema))).replace(LOOSE_CHAR, JSON_CHAR)
    except (ValueError, KeyError, TypeError, NotImplementedError, RecursionError) as exc:
        raise InvalidRequest(f"{param}: this JSON schema cannot be turned into a grammar: {exc}",
                             param=param) from exc
