"""The task suite: prompts with deterministic checks, run greedily in process.

A case is one JSON object a line (the built-in suite, ``data/tasks.jsonl``, has the same form)::

    {"id": "...", "task": "group", "prompt": "..." | "messages": [...], "system": "...",
     "max_tokens": 32, "stop": ["..."],
     "expect": {"exact": "...", "regex": "...", "not_regex": "...", "json_schema": {...}}}

Every check given under ``expect`` must hold. ``exact`` compares after trimming whitespace and a
final period, ignoring case; ``regex`` is searched (Python syntax); ``json_schema`` validates the
first JSON object or array found in the reply.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from slmkit.engine.base import GenerationRequest, SamplingParams
from slmkit.engine.llamacpp.engine import LlamaCppEngine
from slmkit.errors import InvalidRequest

CHECKS = ("exact", "regex", "not_regex", "json_schema")


@dataclass(frozen=True)
class TaskCase:
    id: str
    task: str
    messages: list[dict[str, str]]
    expect: dict[str, Any]
    max_tokens: int = 32
    stop: tuple[str, ...] = ()


@dataclass
class CaseResult:
    id: str
    task: str
    passed: bool
    output: str
    failures: list[str] = field(default_factory=list)
    finish_reason: str | None = None


def builtin_suite() -> list[TaskCase]:
    text = resources.files("slmkit.eval").joinpath("data", "tasks.jsonl").read_text(encoding="utf-8")
    return parse_suite(text, "built-in suite")


def load_suite(path: Path) -> list[TaskCase]:
    try:
        return parse_suite(path.read_text(encoding="utf-8"), str(path))
    except OSError as exc:
        raise InvalidRequest(f"cannot read suite {path}: {exc.strerror or exc}") from exc


def parse_suite(text: str, name: str) -> list[TaskCase]:
    cases: list[TaskCase] = []
    bad: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            cases.append(_case(json.loads(line), number))
        except (ValueError, TypeError) as exc:
            bad.append(f"line {number}: {exc}")
    if bad:
        more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
        raise InvalidRequest(f"bad suite {name}: {'; '.join(bad[:3])}{more}")
    if not cases:
        raise InvalidRequest(f"suite {name} has no cases")
    return cases


def _case(obj: Any, number: int) -> TaskCase:
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    expect = obj.get("expect")
    if not isinstance(expect, dict) or not expect or set(expect) - set(CHECKS):
        raise ValueError(f'"expect" must be an object with some of {", ".join(CHECKS)}')
    for key in ("regex", "not_regex"):
        if key in expect:
            try:
                re.compile(expect[key])
            except (re.error, TypeError) as exc:
                raise ValueError(f"bad {key}: {exc}") from None
    if "json_schema" in expect:
        try:
            jsonschema.Draft202012Validator.check_schema(expect["json_schema"])
        except jsonschema.SchemaError as exc:
            raise ValueError(f"bad json_schema: {exc.message}") from None
    messages = obj.get("messages")
    if isinstance(obj.get("prompt"), str) and obj["prompt"]:
        messages = [{"role": "user", "content": obj["prompt"]}]
    if not (isinstance(messages, list) and messages and all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
            for m in messages)):
        raise ValueError('needs a "prompt" string or a "messages" list of {role, content}')
    if isinstance(obj.get("system"), str):
        messages = [{"role": "system", "content": obj["system"]}, *messages]
    max_tokens = obj.get("max_tokens", 32)
    stop = obj.get("stop", [])
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError("max_tokens must be a positive integer")
    if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
        raise ValueError("stop must be a list of non-empty strings")
    return TaskCase(id=str(obj.get("id", f"case-{number}")), task=str(obj.get("task", "custom")),
                    messages=messages, expect=expect, max_tokens=max_tokens, stop=tuple(stop))


def first_json(text: str) -> Any:
    """The first JSON object or array in ``text`` (models like to wrap it in prose or fences)."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            return decoder.raw_decode(text[match.start():])[0]
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON in the reply")


def check(case: TaskCase, output: str) -> list[str]:
    """The checks that failed (empty when the case passed)."""
    failures = []
    expect = case.expect
    if "exact" in expect and _norm(output) != _norm(str(expect["exact"])):
        failures.append("exact")
    if "regex" in expect and not re.search(expect["regex"], output):
        failures.append("regex")
    if "not_regex" in expect and re.search(expect["not_regex"], output):
        failures.append("not_regex")
    if "json_schema" in expect:
        try:
            jsonschema.validate(first_json(output), expect["json_schema"])
        except (ValueError, jsonschema.ValidationError):
            failures.append("json_schema")
    return failures


def _norm(text: str) -> str:
    return text.strip().rstrip(".").strip().casefold()


async def _run_case(engine: LlamaCppEngine, case: TaskCase) -> CaseResult:
    prompt = engine.chat_tokens(engine.render_chat(case.messages))
    request = GenerationRequest(prompt=prompt, sampling=SamplingParams(temperature=0.0, seed=0),
                                max_tokens=case.max_tokens, stop=case.stop, request_id=case.id)
    parts: list[str] = []
    finish = None
    async for event in engine.generate(request):
        if event.error:
            return CaseResult(case.id, case.task, False, "".join(parts), [f"engine error: {event.error}"])
        parts.append(event.text)
        finish = event.finish_reason.value if event.finish_reason else finish
    output = "".join(parts)
    failures = check(case, output)
    return CaseResult(case.id, case.task, not failures, output, failures, finish)


def run_suite(engine: LlamaCppEngine, cases: list[TaskCase], slots: int,
              on_result: Callable[[CaseResult], None] | None = None,
              stop: Callable[[], bool] | None = None) -> list[CaseResult]:
    """All cases, greedy (temperature 0), ``slots`` at a time through the batching engine.
    Once ``stop()`` is true no further case starts; the finished ones are returned."""
    async def main() -> list[CaseResult]:
        gate = asyncio.Semaphore(slots)

        async def one(case: TaskCase) -> CaseResult | None:
            async with gate:
                if stop and stop():
                    return None
                result = await _run_case(engine, case)
            if on_result:
                on_result(result)
            return result

        return [r for r in await asyncio.gather(*(one(c) for c in cases)) if r is not None]

    return asyncio.run(main())


def pass_rates(results: list[CaseResult]) -> dict[str, dict[str, Any]]:
    """Per task: passed, total and rate; plus ``all``."""
    out: dict[str, dict[str, Any]] = {}
    for group in [*dict.fromkeys(r.task for r in results), "all"]:
        mine = [r for r in results if group in ("all", r.task)]
        passed = sum(r.passed for r in mine)
        out[group] = {"passed": passed, "total": len(mine), "rate": passed / len(mine) if mine else 0.0}
    return out
