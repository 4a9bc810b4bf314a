"""Profile TEMPLATEs: Jinja (as in GGUF metadata) or Ollama's Go template syntax, rendered to a prompt.

The Go subset covers what Ollama's own templates use for chat: ``.System``, ``.Prompt``,
``.Response``, ``range .Messages`` (also ``range $i, $m := .Messages``), ``.Role``,
``.Content``, ``$.System``, ``if / else if / else / end``, ``eq ne and or not len``, string
literals, ``{{- -}}`` trimming and ``{{/* comments */}}``. It is translated to Jinja once.
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from slmkit.engine.llamacpp.template import ChatTemplate, Rendered
from slmkit.errors import InvalidRequest, TemplateSyntaxError

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_FIELD_NAMES = {"System": "System", "Prompt": "Prompt", "Response": "Response", "Messages": "Messages",
                "Tools": "Tools", "Role": "role", "Content": "content", "ToolCalls": "tool_calls"}
_FUNCS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_RESPONSE_MARK = "\x00slm-response\x00"


def is_go_template(source: str) -> bool:
    return "{%" not in source and bool(re.search(r"\{\{-?\s*(\.|\$|if |range |end|else)", source))


class _Translator:
    def __init__(self) -> None:
        self.blocks: list[str] = []  # "if" or "for"
        self.dot: list[str] = []  # what `.` means inside each range

    def field(self, token: str) -> str:
        if token == "$":
            return "root"
        if token.startswith("$."):
            return self._path(token[2:], root=True)
        if token.startswith("$"):
            head, _, rest = token[1:].partition(".")
            return ".".join([head, *self._parts(rest)])
        if token == ".":
            return self.dot[-1] if self.dot else "root"
        if token.startswith("."):
            return self._path(token[1:], root=not self.dot)
        return token

    @staticmethod
    def _parts(path: str) -> list[str]:
        return [_FIELD_NAMES.get(p, p[:1].lower() + p[1:]) for p in path.split(".") if p]

    def _path(self, path: str, *, root: bool) -> str:
        parts = self._parts(path)
        if root:
            return ".".join(parts)
        return ".".join([self.dot[-1], *parts])

    def expr(self, text: str) -> str:
        tokens = re.findall(r'"(?:\\.|[^"\\])*"|\(|\)|[^\s()]+', text)
        out, _ = self._expr(tokens, 0)
        return out

    def _expr(self, tokens: list[str], i: int) -> tuple[str, int]:
        if i >= len(tokens):
            raise TemplateSyntaxError("empty template expression", param="template")
        head = tokens[i]
        args: list[str] = []
        j = i + 1
        if head in (*_FUNCS, "and", "or", "not", "len", "index", "slice"):
            while j < len(tokens) and tokens[j] != ")":
                arg, j = self._atom(tokens, j)
                args.append(arg)
            return self._call(head, args), j
        return self._atom(tokens, i)

    def _atom(self, tokens: list[str], i: int) -> tuple[str, int]:
        token = tokens[i]
        if token == "(":
            inner, j = self._expr(tokens, i + 1)
            return f"({inner})", j + 1
        if token.startswith('"'):
            return token, i + 1
        return self.field(token), i + 1

    @staticmethod
    def _call(name: str, args: list[str]) -> str:
        if name in _FUNCS and len(args) == 2:
            return f"({args[0]} {_FUNCS[name]} {args[1]})"
        if name in ("and", "or") and args:
            return "(" + f" {name} ".join(args) + ")"
        if name == "not" and len(args) == 1:
            return f"(not {args[0]})"
        if name == "len" and len(args) == 1:
            return f"({args[0]}|length)"
        if name == "index" and len(args) == 2:
            return f"{args[0]}[{args[1]}]"
        if name == "slice" and len(args) in (2, 3):
            return f"{args[0]}[{args[1]}:{args[2] if len(args) == 3 else ''}]"
        raise TemplateSyntaxError(f"unsupported template call '{name}' with {len(args)} argument(s)",
                                  param="template")

    def action(self, body: str, left: str, right: str) -> str:
        if body.startswith("/*"):
            return f"{{#{left} #}}" if not right else f"{{#{left} {right}#}}"
        words = body.split(None, 1)
        keyword, rest = (words[0], words[1] if len(words) > 1 else "") if words else ("", "")

        def tag(inner: str) -> str:
            return f"{{%{left} {inner} {right}%}}"

        if keyword == "if":
            self.blocks.append("if")
            return tag(f"if {self.expr(rest)}")
        if keyword == "else":
            if rest.startswith("if "):
                return tag(f"elif {self.expr(rest[3:])}")
            return tag("else")
        if keyword == "end":
            if not self.blocks:
                raise TemplateSyntaxError("{{ end }} without an open if or range", param="template")
            kind = self.blocks.pop()
            if kind == "for":
                self.dot.pop()
            return tag("endif" if kind == "if" else "endfor")
        if keyword == "range":
            return tag(self._range(rest))
        if ":=" in body:
            name, _, value = body.partition(":=")
            return tag(f"set {name.strip().lstrip('$')} = {self.expr(value.strip())}")
        return f"{{{{{left} {self.expr(body)} {right}}}}}"

    def _range(self, rest: str) -> str:
        match = re.match(r"^\$(\w+)\s*,\s*\$(\w+)\s*:=\s*(.+)$", rest) or re.match(r"^\$(\w+)\s*:=\s*(.+)$", rest)
        self.blocks.append("for")
        if match and match.lastindex == 3:
            index, item, source = match.group(1), match.group(2), self.expr(match.group(3))
            self.dot.append(item)
            return f"for {item} in {source} %}}{{% set {index} = loop.index0"
        if match:
            item, source = match.group(1), self.expr(match.group(2))
            self.dot.append(item)
            return f"for {item} in {source}"
        var = f"item{len(self.dot)}"
        source = self.expr(rest)
        self.dot.append(var)
        return f"for {var} in {source}"


def go_to_jinja(source: str) -> str:
    """Translate Ollama's Go template subset to an equivalent Jinja template."""
    translator = _Translator()
    out: list[str] = []
    pos = 0
    for match in _ACTION.finditer(source):
        out.append(source[pos:match.start()].replace("{#", "{{ '{#' }}"))
        out.append(translator.action(match.group(2), match.group(1), match.group(3)))
        pos = match.end()
    out.append(source[pos:])
    if translator.blocks:
        raise TemplateSyntaxError(f"template has an unclosed {translator.blocks[-1]}", param="template")
    return "".join(out)


class ProfileTemplate:
    """Renders chat messages with a profile's TEMPLATE."""

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "") -> None:
        self.go = is_go_template(source)
        self.uses_messages = ".Messages" in source if self.go else True
        self._tokens = {"bos_token": bos_token, "eos_token": eos_token}
        try:
            if self.go:  # Go keeps whitespace literally: no Jinja block trimming
                env = ImmutableSandboxedEnvironment(keep_trailing_newline=True)
                self._go_template = env.from_string(go_to_jinja(source))
            else:
                self._jinja = ChatTemplate(source, bos_token=bos_token, eos_token=eos_token)
        except TemplateError as exc:
            raise TemplateSyntaxError(f"the TEMPLATE does not compile: {exc}", param="template") from exc

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True) -> str:
        if not self.go:
            return self._jinja.render(messages, add_generation_prompt=add_generation_prompt)
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        if self.uses_messages:
            last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            return Rendered.of(self._go(messages, System=system, Prompt=last_user, Response=""), messages)
        return Rendered.of(self._legacy(messages, system, add_generation_prompt), messages)

    def _go(self, messages: list[dict[str, Any]], **values: Any) -> str:
        try:
            return self._go_template.render(Messages=messages, **self._tokens, **values)
        except TemplateError as exc:
            raise InvalidRequest(f"the model's TEMPLATE rejected the messages: {exc}", param="messages") from exc

    def _legacy(self, messages: list[dict[str, Any]], system: str, add_generation_prompt: bool) -> str:
        """One render per user turn, as Ollama does for templates without .Messages."""
        turns: list[tuple[str, str | None]] = []
        for message in messages:
            if message["role"] == "user":
                turns.append((message["content"], None))
            elif message["role"] == "assistant" and turns and turns[-1][1] is None:
                turns[-1] = (turns[-1][0], message["content"])
        parts = []
        for i, (prompt, response) in enumerate(turns):
            last = i == len(turns) - 1
            text = self._go(messages, System=system if i == 0 else "", Prompt=prompt,
                            Response=response if response is not None else (_RESPONSE_MARK if last else ""))
            if _RESPONSE_MARK in text:
                text = text[: text.index(_RESPONSE_MARK)] if add_generation_prompt else text.replace(_RESPONSE_MARK, "")
            parts.append(text)
        return "".join(parts)

