"""Validate responses against the official OpenAI OpenAPI document (see shared/specs/README)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema

SPEC = Path(__file__).resolve().parent.parent.parent / "shared" / "specs" / "openai-openapi.json"


def _fix_nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_fix_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _fix_nullable(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") is True:
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
            if "enum" in out and None not in out["enum"]:
                out["enum"] = [*out["enum"], None]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


@functools.cache
def _components() -> dict[str, Any]:
    spec = json.loads(SPEC.read_text())
    return _fix_nullable(spec["components"])  # type: ignore[no-any-return]


def validate(schema_name: str, instance: Any) -> None:
    """Raise jsonschema.ValidationError when ``instance`` does not match the named schema."""
    root = {"components": _components(), "$ref": f"#/components/schemas/{schema_name}"}
    jsonschema.Draft202012Validator(root).validate(instance)
