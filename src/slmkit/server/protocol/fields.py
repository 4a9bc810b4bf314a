"""Bounded field types and checks shared by every request model (OpenAI, Ollama, our own).

Every number a client sends reaches llama.cpp through C types (int32, float, uint32) or sizes
an allocation, so each is checked here to a finite, bounded range: a value outside it is a 400
naming the field, never a ``ctypes.ArgumentError`` in the scheduler thread or a giant buffer.
Text must be valid Unicode: a lone surrogate (``"\\ud800"`` in JSON, or CESU-8 bytes, which
Python's JSON decoder lets through) is a 400 before it can fail an encoder deeper down.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictInt, model_validator

INT32_MAX = 2**31 - 1
MAX_LOGIT_BIAS = 1024  # entries in one logit_bias map


def _real(lo: float, hi: float, *, open_low: bool = False) -> Any:
    if open_low:
        return Field(strict=True, gt=lo, le=hi, allow_inf_nan=False)
    return Field(strict=True, ge=lo, le=hi, allow_inf_nan=False)


# Finite floats (integers are taken; strings, booleans, inf, nan and integers too large for a
# double are not), each in the range its sampler stage accepts.
Unit = Annotated[float, _real(0.0, 1.0)]  # top_p, min_p
UnitOpen = Annotated[float, _real(0.0, 1.0, open_low=True)]  # typical_p
Temperature = Annotated[float, _real(0.0, 2.0)]  # OpenAI's range
OllamaTemperature = Annotated[float, _real(0.0, 100.0)]
RepeatPenalty = Annotated[float, _real(0.0, 100.0, open_low=True)]
Penalty = Annotated[float, _real(-2.0, 2.0)]  # OpenAI's presence/frequency range
OllamaPenalty = Annotated[float, _real(-100.0, 100.0)]

# Integers (no floats, strings or booleans) that fit the C types they become.
TopK = Annotated[StrictInt, Field(ge=0, le=1_000_000)]
RepeatLastN = Annotated[StrictInt, Field(ge=-1, le=1_048_576)]  # -1: the whole context
NumPredict = Annotated[StrictInt, Field(ge=-2, le=INT32_MAX)]  # -1 infinite, -2 fill the context
Count = Annotated[StrictInt, Field(ge=1, le=INT32_MAX)]  # max_tokens, num_ctx, dimensions ...
TopLogprobs = Annotated[StrictInt, Field(ge=0, le=20)]
Seed = Annotated[StrictInt, Field(ge=-(2**63), le=2**63 - 1)]  # int64, as OpenAI and Ollama (Go int) take it
TokenId = Annotated[StrictInt, Field(ge=0, le=INT32_MAX)]
TokenIds = Annotated[list[TokenId], Field(min_length=1)]

_TOKEN_KEY = re.compile(r"-?[0-9]{1,10}")


def check_logit_bias(value: dict[str, float] | None) -> dict[str, float] | None:
    """Keys are token ids written in ASCII digits, values finite numbers in [-100, 100]."""
    if not value:
        return value
    if len(value) > MAX_LOGIT_BIAS:
        raise ValueError(f"logit_bias may name at most {MAX_LOGIT_BIAS} tokens")
    for key, bias in value.items():
        if not _TOKEN_KEY.fullmatch(key) or not 0 <= int(key) <= INT32_MAX:
            raise ValueError(f"logit_bias keys must be token ids, got {key[:40]!r}")
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not math.isfinite(bias) \
                or not -100 <= bias <= 100:
            raise ValueError("logit_bias values must be numbers between -100 and 100")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def find_bad_text(value: Any, path: str = "") -> str | None:
    """The path of the first string (value or key) in ``value`` that holds a lone surrogate."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return where or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                name = f"{where}.{key}" if where else str(key)
                if isinstance(key, str) and _SURROGATE.search(key):
                    return where or "body"
                stack.append((child, name))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}.{i}" if where else str(i)) for i, child in enumerate(item))
    return None


class RequestBody(BaseModel):
    """Base of every top-level request model: rejects text that is not valid Unicode."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = find_bad_text(data)
        if where is not None:
            raise ValueError(f"{_SURROGATE.sub('?', where)[:80]}: text must be valid Unicode "
                             "(a lone surrogate or CESU-8 bytes are not)")
        return data
