"""What the load generator sends: fixed lengths, a built-in mixed chat set, or a JSONL file."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmkit.errors import InvalidRequest

# Common one-token English words: a prompt of N of them is close to N tokens on most vocabularies.
_WORD_TEXT = ("the time people way year day thing man world life hand part child eye woman place work week case "
          "point number group problem fact water room money story month book word side family night house "
          "city tree river stone light sound music paper road field market garden ship island bridge")

# The built-in mixed chat set: short and long questions, short and long answers.
MIXED_CHAT: tuple[tuple[str, int], ...] = (
    ("What is the capital of France?", 16),
    ("Write a haiku about autumn leaves.", 32),
    ("Explain in detail how a refrigerator keeps food cold.", 192),
    ("Give me three tips for writing clear emails.", 96),
    ("Translate 'good morning, how are you?' into Spanish.", 24),
    ("Write a long story about a lighthouse keeper who finds a message in a bottle.", 256),
    ("What is 17 times 23? Answer with the number only.", 8),
    ("Summarise the plot of Romeo and Juliet in a paragraph.", 128),
    ("List the planets of the solar system in order from the sun.", 64),
    ("Describe the water cycle to a ten-year-old, step by step.", 160),
    ("Suggest a name for a bakery that sells only bread.", 16),
    ("Write a Python function that reverses a string, and explain it.", 128),
    ("What are the pros and cons of working from home? Discuss at length.", 224),
    ("Give a one-sentence definition of photosynthesis.", 40),
    ("Compose a short poem about the sea at night.", 80),
    ("How do I boil an egg so the yolk stays soft?", 96),
)


@dataclass(frozen=True)
class BenchPrompt:
    """One request's content: chat messages and the output budget."""

    messages: list[dict[str, str]]
    max_tokens: int


def salted(prompt: BenchPrompt, salt: str | None) -> BenchPrompt:
    """The prompt with ``[salt]`` before its first message's text: prompts no earlier run sent,
    so no server answers them from a prompt cache that run filled."""
    if not salt:
        return prompt
    first, *rest = prompt.messages
    return BenchPrompt([{**first, "content": f"[{salt}] {first['content']}"}, *rest], prompt.max_tokens)


@dataclass
class Workload:
    """A cycle of prompts (request i sends ``prompts[i % len(prompts)]``), or, with ``make``, a
    prompt made for each request index."""

    name: str
    prompts: list[BenchPrompt]
    ignore_eos: bool = False
    description: dict[str, Any] = field(default_factory=dict)
    make: Callable[[int], BenchPrompt] | None = None

    def item(self, index: int) -> BenchPrompt:
        if self.make is not None:
            return self.make(index)
        return self.prompts[index % len(self.prompts)]


def fixed_workload(prompt_tokens: int, output_tokens: int, *, variants: int | None = None,
                   seed: int = 0) -> Workload:
    """Prompts of about ``prompt_tokens`` words that ask for ``output_tokens`` tokens; ``ignore_eos``
    is sent so servers that honour it (llama.cpp, vLLM, slmkit) generate the full budget.

    Every request gets a prompt of its own (as vLLM's random dataset does), so no server answers
    from a cached prompt: what is measured is prompt reading plus generation. ``variants=N``
    cycles N prompts instead, to measure prompt caches."""
    if prompt_tokens < 1 or output_tokens < 1:
        raise InvalidRequest("fixed prompt and output lengths must be at least 1 token")
    words = _WORD_TEXT.split()

    def make(i: int) -> BenchPrompt:
        rng = random.Random(seed * 1_000_003 + i)
        filler = " ".join(rng.choice(words) for _ in range(max(0, prompt_tokens - 12)))
        text = f"Request {i}. Write a very long essay using these words: {filler}"
        return BenchPrompt([{"role": "user", "content": text}], output_tokens)

    description = {"prompt_words": prompt_tokens, "output_tokens": output_tokens, "variants": variants}
    if variants:
        return Workload("fixed", [make(i) for i in range(variants)], ignore_eos=True, description=description)
    return Workload("fixed", [make(0)], ignore_eos=True, description=description, make=make)


def mixed_workload(max_tokens: int | None = None) -> Workload:
    """The built-in mixed chat set; ``max_tokens`` caps each item's budget when given."""
    prompts = [BenchPrompt([{"role": "user", "content": q}], min(n, max_tokens) if max_tokens else n)
               for q, n in MIXED_CHAT]
    return Workload("mixed", prompts, description={"items": len(prompts), "max_tokens_cap": max_tokens})


def jsonl_workload(path: Path, default_max_tokens: int) -> Workload:
    """One JSON object a line: ``{"prompt": str}`` or ``{"messages": [...]}``, optionally
    ``"max_tokens"``. Every bad line is named in one error."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidRequest(f"cannot read prompt file {path}: {exc.strerror or exc}") from exc
    prompts: list[BenchPrompt] = []
    bad: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            prompts.append(_parse_line(line, default_max_tokens))
        except ValueError as exc:
            bad.append(f"line {number}: {exc}")
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise InvalidRequest(f"bad prompt file {path}: {'; '.join(bad[:3])}{more}")
    if not prompts:
        raise InvalidRequest(f"prompt file {path} has no prompts")
    return Workload("jsonl", prompts, description={"file": str(path), "items": len(prompts)})


def _parse_line(line: str, default_max_tokens: int) -> BenchPrompt:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    max_tokens = obj.get("max_tokens", default_max_tokens)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise ValueError("max_tokens must be a positive integer")
    if isinstance(obj.get("prompt"), str) and obj["prompt"]:
        return BenchPrompt([{"role": "user", "content": obj["prompt"]}], max_tokens)
    messages = obj.get("messages")
    if (isinstance(messages, list) and messages
            and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                    for m in messages)):
        return BenchPrompt([{"role": m["role"], "content": m["content"]} for m in messages], max_tokens)
    raise ValueError('needs a non-empty "prompt" string or a "messages" list of {role, content}')
