"""Chat templates from GGUF metadata, rendered with Jinja2 the way Hugging Face does."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from slmkit.errors import InvalidRequest

# Used when a GGUF carries no template: ChatML, which most small models understand.
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] "
    "+ '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% endif %}"
)


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class Rendered(str):
    """A rendered chat prompt that remembers the message contents written into it, so that they
    can be tokenized as plain text: only the template's own markup may become control tokens."""

    contents: tuple[str, ...] = ()

    @classmethod
    def of(cls, text: str, messages: list[dict[str, Any]]) -> Rendered:
        out = cls(text)
        out.contents = tuple(c for m in messages if isinstance(c := m.get("content"), str) and c)
        return out


def plain_spans(rendered: str, contents: tuple[str, ...], special: tuple[str, ...]) -> list[tuple[int, int]]:
    """Where in ``rendered`` the contents that hold special-token text are, in order (a content
    the template changed is looked for stripped; one not found at all is left as it is)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for content in contents:
        if not any(s in content for s in special):
            continue
        for text in (content, content.strip()):
            at = rendered.find(text, pos) if text else -1
            if at >= 0:
                spans.append((at, at + len(text)))
                pos = at + len(text)
                break
    return spans


class ChatTemplate:
    """A compiled chat template plus the special tokens it may refer to."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = "") -> None:
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                            extensions=[loopcontrols])
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        self.source = source or CHATML
        self._template = env.from_string(self.source)
        self.bos_token = bos_token
        self.eos_token = eos_token

    def render(self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True,
               tools: list[dict[str, Any]] | None = None, **extra: Any) -> Rendered:
        try:
            return Rendered.of(self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                tools=tools,
                bos_token=self.bos_token,
                eos_token=self.eos_token,
                **extra,
            ), messages)
        except TemplateError as exc:
            raise InvalidRequest(f"chat template rejected the messages: {exc}", param="messages") from exc
