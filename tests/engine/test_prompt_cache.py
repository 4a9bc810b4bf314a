"""The host-memory prompt cache: a prompt whose slot was overwritten comes back from RAM."""

from __future__ import annotations

import pytest

import slmkit

DOC_A = " ".join(f"Clause {i}: the tenant keeps the garden tidy and pays rent on day {i}." for i in range(8))
DOC_B = " ".join(f"Step {i}: stir the soup slowly and add {i} pinches of salt." for i in range(8))


def conversation(doc: str, question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": f"Answer from this document.\n{doc}"},
            {"role": "user", "content": question}]


@pytest.mark.parametrize("cache_mib", [64, 0])
def test_an_evicted_prompt_is_restored(cache_mib: int) -> None:
    with slmkit.load(parallel=1, ctx_size=1024, threads=2, prompt_cache_mib=cache_mib) as model:
        first = model.chat(conversation(DOC_A, "Who keeps the garden tidy?"), max_tokens=6, temperature=0)
        model.chat(conversation(DOC_B, "How should the soup be stirred?"), max_tokens=6, temperature=0)  # evicts A
        again = model.chat(conversation(DOC_A, "Who keeps the garden tidy?"), max_tokens=6, temperature=0)
        follow_up = model.chat(conversation(DOC_A, "When is the rent paid?"), max_tokens=6, temperature=0)
        assert again.text == first.text  # a restored state gives exactly the same answer
        saved = model.stats()["prompt_cache_bytes"]
        if cache_mib:
            assert again.usage.cached_tokens == again.usage.prompt_tokens - 1
            assert follow_up.usage.cached_tokens > 150  # the shared document, not only the template
            assert 0 < saved <= cache_mib * 2**20
        else:
            assert again.usage.cached_tokens < 40 and saved == 0


def test_the_budget_is_kept() -> None:
    """A budget smaller than one state saves nothing, and answers stay right."""
    with slmkit.load(parallel=1, ctx_size=1024, threads=2, prompt_cache_mib=1) as model:
        for doc in (DOC_A, DOC_B, DOC_A):
            assert model.chat(conversation(doc, "Summarize."), max_tokens=4, temperature=0).text
        assert model.stats()["prompt_cache_bytes"] <= 2**20


def test_the_default_budget_follows_the_memory_available(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, the budget is a quarter of the memory available at load, at most llama-server's 8 GiB."""
    from slmkit.catalog import hardware
    from slmkit.engine.llamacpp import engine
    from slmkit.engine.llamacpp.prompt_cache import DEFAULT_MAX_BYTES, default_budget
    from slmkit.settings import EngineSettings

    assert default_budget(4 * 2**30) == 2**30 and default_budget(64 * 2**30) == DEFAULT_MAX_BYTES == 8 * 2**30
    assert default_budget(0) == 0
    monkeypatch.setattr(hardware, "available_memory", lambda: 2 * 2**30)
    assert EngineSettings().prompt_cache_mib is None
    assert engine.prompt_cache_budget(EngineSettings()) == 2**29
    assert engine.prompt_cache_budget(EngineSettings(prompt_cache_mib=0)) == 0
    assert engine.prompt_cache_budget(EngineSettings(prompt_cache_mib=64)) == 64 * 2**20
    assert 0 < hardware.available_memory() <= hardware.probe().ram_total
