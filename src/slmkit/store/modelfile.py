"""Ollama Modelfiles: parse one into a Profile (a model plus serving defaults), print one back."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from slmkit.errors import ModelfileError

# Ollama's PARAMETER names we apply, and their types.
PARAMETERS: dict[str, type] = {
    "temperature": float, "top_k": int, "top_p": float, "min_p": float, "typical_p": float,
    "num_ctx": int, "num_predict": int, "repeat_penalty": float, "repeat_last_n": int,
    "presence_penalty": float, "frequency_penalty": float, "seed": int, "stop": str,
}
# PARAMETER name -> OpenAI request field it fills when the request leaves it unset.
REQUEST_FIELDS = {
    "temperature": "temperature", "top_k": "top_k", "top_p": "top_p", "min_p": "min_p", "typical_p": "typical_p",
    "repeat_penalty": "repeat_penalty", "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty", "seed": "seed", "stop": "stop", "num_predict": "max_tokens",
}
ROLES = ("system", "user", "assistant", "tool")
INSTRUCTIONS = ("from", "parameter", "system", "template", "message", "license", "adapter", "requires")


@dataclass
class Profile:
    """What a Modelfile says beyond the weights: defaults applied when the model is served."""

    from_: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    template: str | None = None
    messages: list[dict[str, str]] = field(default_factory=list)
    license: str | None = None

    def over(self, base: Profile | None) -> Profile:
        """This profile layered over ``base`` (a FROM model's own profile): ours wins."""
        if base is None:
            return self
        return replace(self, parameters={**base.parameters, **self.parameters},
                       system=self.system if self.system is not None else base.system,
                       template=self.template if self.template is not None else base.template,
                       messages=self.messages or base.messages,
                       license=self.license if self.license is not None else base.license)

    def request_defaults(self) -> dict[str, Any]:
        """Defaults in OpenAI request-field terms (a request's own values override them)."""
        return {REQUEST_FIELDS[k]: v for k, v in self.parameters.items() if k in REQUEST_FIELDS}

    @property
    def num_ctx(self) -> int | None:
        value = self.parameters.get("num_ctx")
        return int(value) if value is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"from": self.from_, "parameters": self.parameters, "system": self.system,
                "template": self.template, "messages": self.messages, "license": self.license}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        return cls(from_=data.get("from", ""), parameters=dict(data.get("parameters") or {}),
                   system=data.get("system"), template=data.get("template"),
                   messages=list(data.get("messages") or []), license=data.get("license"))

    def to_modelfile(self, from_: str | None = None) -> str:
        lines = [f"FROM {from_ or self.from_}"]
        if self.template is not None:
            lines.append(f"TEMPLATE {_quote(self.template)}")
        if self.system is not None:
            lines.append(f"SYSTEM {_quote(self.system)}")
        for key, value in self.parameters.items():
            for item in value if isinstance(value, list) else [value]:
                lines.append(f"PARAMETER {key} {json.dumps(item) if isinstance(item, str) else item}")
        for message in self.messages:
            lines.append(f"MESSAGE {message['role']} {_quote(message['content'])}")
        if self.license is not None:
            lines.append(f"LICENSE {_quote(self.license)}")
        return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return f'"""{text}"""'


def coerce_parameter(key: str, raw: Any) -> Any:
    name = key.lower()
    if name not in PARAMETERS:
        raise ModelfileError(f"unknown PARAMETER '{key}'; known: {', '.join(PARAMETERS)}", param="parameters")
    kind = PARAMETERS[name]
    if name == "stop":
        return [str(v) for v in raw] if isinstance(raw, list) else [str(raw)]
    try:
        return kind(raw)
    except (TypeError, ValueError):
        raise ModelfileError(f"PARAMETER {name} needs a {kind.__name__}, got {raw!r}", param="parameters") from None


def add_parameter(params: dict[str, Any], key: str, raw: Any) -> None:
    value = coerce_parameter(key, raw)
    if key.lower() == "stop":
        params.setdefault("stop", []).extend(value)
    else:
        params[key.lower()] = value


_LINE = re.compile(r"^\s*([A-Za-z]+)\s*(.*)$", re.S)


def _values(text: str) -> list[tuple[int, str, str]]:
    """Split a Modelfile into (line number, instruction, raw argument) with triple quotes joined."""
    out: list[tuple[int, str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line, number = lines[i], i + 1
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise ModelfileError(f"Modelfile line {number}: cannot read '{line.strip()}'")
        keyword, rest = match.group(1).lower(), match.group(2)
        if '"""' in rest:
            head, _, tail = rest.partition('"""')
            body = [tail]
            while '"""' not in body[-1]:
                if i >= len(lines):
                    raise ModelfileError(f"Modelfile line {number}: unterminated \"\"\" string")
                body.append(lines[i])
                i += 1
            joined = "\n".join(body)
            rest = head + '"""' + joined[: joined.index('"""')] + '"""'
        out.append((number, keyword, rest))
    return out


def _unquote(raw: str) -> str:
    text = raw.strip()
    if text.startswith('"""') and text.endswith('"""') and len(text) >= 6:
        return text[3:-3]
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))
        except json.JSONDecodeError:
            return text[1:-1]
    return text


def parse_modelfile(text: str) -> Profile:
    profile = Profile()
    for number, keyword, raw in _values(text):
        if keyword not in INSTRUCTIONS:
            raise ModelfileError(f"Modelfile line {number}: unknown instruction '{keyword.upper()}'")
        if keyword == "from":
            profile.from_ = _unquote(raw)
        elif keyword == "parameter":
            key, _, value = raw.strip().partition(" ")
            if not value.strip():
                raise ModelfileError(f"Modelfile line {number}: PARAMETER needs a name and a value")
            add_parameter(profile.parameters, key, _unquote(value))
        elif keyword in ("system", "template", "license"):
            setattr(profile, keyword, _unquote(raw))
        elif keyword == "message":
            role, _, content = raw.strip().partition(" ")
            if role.lower() not in ROLES:
                raise ModelfileError(f"Modelfile line {number}: MESSAGE role must be one of {', '.join(ROLES)}")
            profile.messages.append({"role": role.lower(), "content": _unquote(content)})
        elif keyword == "adapter":
            raise ModelfileError(f"Modelfile line {number}: ADAPTER (LoRA) is not supported yet")
    if not profile.from_:
        raise ModelfileError("a Modelfile needs a FROM line")
    return profile
