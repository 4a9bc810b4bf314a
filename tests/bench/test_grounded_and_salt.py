"""The grounded workload's shape, and the per-run prompt salt that keeps caches of earlier runs out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from slmkit.bench import runner as runner_module
from slmkit.bench.grounded import grounded_workload
from slmkit.bench.protocols import Endpoint, SendOptions
from slmkit.bench.records import RequestRecord
from slmkit.bench.runner import BenchConfig, BenchRunner, Level
from slmkit.bench.workload import BenchPrompt, fixed_workload, salted
from slmkit.engine.llamacpp.bindings import Model
from slmkit.store.embedded import EMBEDDED


def test_grounded_documents_tasks_and_budgets() -> None:
    work = grounded_workload()
    vocab = Model(EMBEDDED["smollm2-135m-instruct"].path(), vocab_only=True)
    try:
        items = [work.item(i) for i in range(60)]
        lengths = [len(vocab.tokenize(p.messages[0]["content"], add_special=False, parse_special=False))
                   for p in items]
    finally:
        vocab.close()
    assert min(lengths) >= 280 and max(lengths) <= 620  # ~300-600-token documents with their task
    assert len({p.messages[0]["content"] for p in items}) == 60 and work.item(7) == items[7]
    assert {p.max_tokens for p in items} <= set(range(128, 257)) and len({p.max_tokens for p in items}) > 2
    assert all("<document>" in p.messages[0]["content"] for p in items) and not work.ignore_eos
    assert max(p.max_tokens for p in (grounded_workload(150).item(i) for i in range(20))) == 150


def test_salted_prompts() -> None:
    prompt = BenchPrompt([{"role": "system", "content": "S"}, {"role": "user", "content": "U"}], 9)
    assert salted(prompt, "ab.3").messages == [{"role": "system", "content": "[ab.3] S"},
                                               {"role": "user", "content": "U"}]
    assert salted(prompt, None) == prompt


async def test_every_run_has_its_own_salt(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[str, str]] = []

    async def discover(client: Any, endpoint: Endpoint) -> None:
        endpoint.model = "m"

    async def send(client: Any, endpoint: Endpoint, prompt: BenchPrompt, options: SendOptions,
                   record: RequestRecord) -> None:
        sent.append((endpoint.label, prompt.messages[0]["content"]))
        record.output_tokens, record.finish_reason, record.e2e_s = 1, "stop", 0.001

    monkeypatch.setattr(runner_module, "discover", discover)
    monkeypatch.setattr(runner_module, "send", send)
    endpoints = [Endpoint.parse("a=http://127.0.0.1:9"), Endpoint.parse("b=http://127.0.0.1:9")]
    config = BenchConfig(levels=[Level("concurrency", 1)], requests=2, warmup=1, repeats=2, salt="s1")
    outcome = await BenchRunner(endpoints, fixed_workload(8, 4, variants=1), config).run(asyncio.Event())
    assert [r["salt"] for r in outcome.runs] == ["s1.1", "s1.2", "s1.3", "s1.4"]
    assert [c.split("]")[0] for _, c in sent] == ["[s1.w0", "[s1.w1"] + [f"[s1.{n}" for n in (1, 1, 2, 2, 3, 3, 4, 4)]
    assert len({c.split("] ", 1)[1] for _, c in sent}) == 1  # the same one-variant prompt, salted apart
