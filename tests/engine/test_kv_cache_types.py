"""Quantized KV caches (--cache-type-k/-v): served correctly, and counted smaller everywhere memory is planned."""

from __future__ import annotations

import llama_cpp as ll

import slmkit
from slmkit.catalog.estimate import estimate_entry
from slmkit.catalog.hardware import Hardware
from slmkit.catalog.models import find
from slmkit.catalog.recommend import recommend
from slmkit.deploy.render import settings_env
from slmkit.deploy.spec import DeployOptions, plan

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def _state_bytes(model: slmkit.Model) -> int:
    """Bytes of slot 0's KV state as llama.cpp serializes it (proportional to the cache type)."""
    engine = model._engine
    return int(ll.llama_state_seq_get_size(engine.ctx.ptr, 0))  # type: ignore[attr-defined]


def test_q8_0_serves_and_holds_half_the_bytes() -> None:
    sizes, answers = {}, {}
    for kv in ("f16", "q8_0"):
        with slmkit.load(parallel=1, ctx_size=512, threads=2, cache_type_k=kv, cache_type_v=kv,
                         prompt_cache_mib=0) as model:
            answers[kv] = model.chat(QUESTION, max_tokens=8, temperature=0).text
            sizes[kv] = _state_bytes(model)
    assert "Paris" in answers["q8_0"] and "Paris" in answers["f16"]
    assert 0.45 < sizes["q8_0"] / sizes["f16"] < 0.6  # 34 bytes per 32 values instead of 64


def test_the_estimate_recommend_and_deploy_count_the_type() -> None:
    entry = find("smollm2-135m-instruct")
    f16 = estimate_entry(entry, "q4_k_m", ctx=4096, parallel=8)
    q8 = estimate_entry(entry, "q4_k_m", ctx=4096, parallel=8, kv_type="q8_0", kv_type_v="q8_0")
    mixed = estimate_entry(entry, "q4_k_m", ctx=4096, parallel=8, kv_type="q8_0", kv_type_v="f16")
    assert q8.kv_cache_bytes == round(f16.kv_cache_bytes * 34 / 64)
    assert q8.kv_cache_bytes < mixed.kv_cache_bytes < f16.kv_cache_bytes and mixed.kv_type == "q8_0/f16"

    hw = Hardware(ram_total=2**30, ram_available=int(1.2 * 2**30), cores=2, cpu_features=[], machine="x86_64",
                  disk_free=10**12)
    a = recommend(hw, ctx=8192, parallel=4)
    b = recommend(hw, ctx=8192, parallel=4, cache_type_k="q4_0", cache_type_v="q4_0")
    assert b.choice is not None
    assert a.choice is None or b.choice.entry.parameters >= a.choice.entry.parameters
    assert a.choice is None or b.choice.estimate.kv_cache_bytes < a.choice.estimate.kv_cache_bytes

    plain = plan(DeployOptions(model="smollm2-135m-instruct", ctx=4096, slots=8))
    small = plan(DeployOptions(model="smollm2-135m-instruct", ctx=4096, slots=8, cache_type_k="q8_0",
                               cache_type_v="q8_0"))
    assert small.memory_request < plain.memory_request
    assert settings_env(small)["SLM_ENGINE__CACHE_TYPE_K"] == "q8_0"
    assert "SLM_ENGINE__CACHE_TYPE_K" not in settings_env(plain)
