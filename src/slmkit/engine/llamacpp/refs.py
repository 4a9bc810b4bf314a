"""Local ``$ref``s of a JSON schema, made safe to nest and to turn into grammar rules.

pydantic's ``model_json_schema()`` puts nested models and enums in ``$defs`` and points at
them with ``{"$ref": "#/$defs/Name"}``; older generators use ``definitions``. Such a pointer is
relative to the document's root, so it stops resolving as soon as the schema is nested in
another one (a tool's parameters inside the tool-call grammar's ``oneOf``). The grammar
converter also names each rule after the pointer's last segment, so two tools that both
define ``Address`` would share one rule, and a name such as ``string`` or ``My_Model`` would
clash with or miss a rule of its own.

``localize_refs`` rewrites every local reference to ``#/$defs/<prefix>-ref<n>-<name>`` and
returns those definitions (copies of their targets, rewritten the same way) for the caller to
put at the root of the document it builds. Recursion that nests (a tree whose children are
trees) stays recursion in the grammar; a cycle of references that never nests (``A`` is
``B`` is ``A``) could only become a left-recursive rule and is refused with a 400 naming
``param``, as is a reference that leaves the schema."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from slmkit.errors import InvalidRequest

_RULE_CHARS = re.compile(r"[^a-zA-Z0-9-]+")
_HEAD_KEYS = ("anyOf", "oneOf", "allOf")  # a reference under these is reached without nesting
_DEF_KEYS = ("$defs", "definitions")
_DATA_KEYS = frozenset({"enum", "const", "default", "examples"})
_MAP_KEYS = frozenset({"properties", "patternProperties", "dependentSchemas", "$defs", "definitions"})


def localize_refs(schema: dict[str, Any], prefix: str, param: str, label: str | None = None,
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``schema`` (without its own ``$defs`` / ``definitions``) with every ``$ref`` pointing at
    ``#/$defs/<name>``, and the definitions those names stand for. Errors name ``param`` and
    begin with ``label`` (``param`` when not given)."""
    return _Localizer(schema, prefix, param, label or param).run()


def with_local_refs(schema: dict[str, Any], prefix: str, param: str) -> dict[str, Any]:
    """``schema`` with its references localized and their definitions at its root."""
    body, defs = localize_refs(schema, prefix, param)
    return {**body, "$defs": defs} if defs else body


class _Localizer:
    def __init__(self, root: dict[str, Any], prefix: str, param: str, label: str) -> None:
        self.root = root
        self.prefix = prefix
        self.param = param
        self.label = label
        self.names: dict[str, str] = {}  # JSON pointer -> definition name
        self.defs: dict[str, Any] = {}
        self.pending: list[str] = []

    def run(self) -> tuple[dict[str, Any], dict[str, Any]]:
        body = self.rewrite({k: v for k, v in self.root.items() if k not in _DEF_KEYS})
        while self.pending:
            pointer = self.pending.pop()
            target = self.resolve(pointer)
            if isinstance(target, dict):
                target = {k: v for k, v in target.items() if k not in _DEF_KEYS}
            self.defs[self.names[pointer]] = self.rewrite(target)
        self.check_cycles()
        return body, self.defs

    def rewrite(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.rewrite(item) for item in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                out[key] = f"#/$defs/{self.name(value)}"
            elif key in _DATA_KEYS:
                out[key] = value  # data, not schemas
            elif key in _MAP_KEYS and isinstance(value, dict):
                out[key] = {name: self.rewrite(sub) for name, sub in value.items()}  # names -> schemas
            else:
                out[key] = self.rewrite(value)
        return out

    def name(self, ref: str) -> str:
        if not ref.startswith("#") or (len(ref) > 1 and not ref.startswith("#/")):
            raise InvalidRequest(f"{self.label}: only references inside the schema ('#/...') are supported, "
                                 f"not {ref[:80]!r}", param=self.param)
        pointer = unquote(ref[1:])
        if pointer not in self.names:
            last = pointer.rsplit("/", 1)[-1] or "root"
            slug = _RULE_CHARS.sub("-", last).strip("-")[:40] or "def"
            self.names[pointer] = f"{self.prefix}-ref{len(self.names)}-{slug}"
            self.pending.append(pointer)
        return self.names[pointer]

    def resolve(self, pointer: str) -> Any:
        node: Any = self.root
        for raw in pointer.split("/")[1:]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise InvalidRequest(f"{self.label}: the reference '#{pointer[:80]}' does not resolve",
                                     param=self.param)
        if not isinstance(node, dict | bool):
            raise InvalidRequest(f"{self.label}: the reference '#{pointer[:80]}' is not a schema", param=self.param)
        return node

    def check_cycles(self) -> None:
        """400 for references that lead back to themselves without nesting (left recursion)."""
        edges = {name: _head_refs(body) for name, body in self.defs.items()}
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        for start in edges:
            stack: list[tuple[str, list[str]]] = [(start, list(edges[start]))]
            if state.get(start):
                continue
            state[start] = 1
            while stack:
                name, todo = stack[-1]
                if not todo:
                    state[name] = 2
                    stack.pop()
                    continue
                nxt = todo.pop()
                if state.get(nxt) == 1:
                    raise InvalidRequest(f"{self.label}: the schema refers to itself without nesting (through "
                                         f"'{nxt.split('-', 2)[-1]}'), so no document can match it",
                                         param=self.param)
                if not state.get(nxt):
                    state[nxt] = 1
                    stack.append((nxt, list(edges.get(nxt, ()))))


def _head_refs(node: Any) -> set[str]:
    """Definitions ``node`` reaches through ``$ref`` and ``anyOf`` / ``oneOf`` / ``allOf`` alone."""
    found: set[str] = set()
    stack = [node]
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        ref = item.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            found.add(ref.removeprefix("#/$defs/"))
        for key in _HEAD_KEYS:
            if isinstance(item.get(key), list):
                stack.extend(item[key])
    return found
