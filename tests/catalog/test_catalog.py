"""The catalog data, its schema, the memory estimate and recommendations."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import jsonschema
import pytest

from slmkit.catalog.estimate import Dims, estimate, estimate_entry, estimate_file, parse_size
from slmkit.catalog.hardware import probe
from slmkit.catalog.models import catalog_text, entries, find, load_catalog, schema_text, size_class
from slmkit.errors import InvalidRequest, ModelNotFound
from slmkit.store.embedded import EMBEDDED

REQUIRED = ["smollm2-135m", "smollm2-360m", "smollm2-1.7b", "phi-4-mini", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b",
            "qwen3-8b", "qwen3-14b", "qwen3-32b", "gemma-3-270m", "gemma-3-1b", "gemma-3-4b", "gemma-3-12b",
            "gemma-3-27b", "llama-3.2-1b", "llama-3.2-3b", "llama-3.1-8b", "deepseek-r1-distill-qwen-1.5b",
            "deepseek-r1-distill-qwen-7b", "mistral-7b", "bitnet-b1.58-2b-4t"]


def _slm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, timeout=120)


def test_catalog_validates_against_its_schema() -> None:
    jsonschema.Draft202012Validator(json.loads(schema_text())).validate(json.loads(catalog_text()))


def test_catalog_has_the_models_and_sane_dimensions() -> None:
    names = [e.name for e in load_catalog()]
    assert len(names) >= 25 and len(set(names)) == len(names)
    assert set(REQUIRED) <= set(names)
    for e in load_catalog():
        a = e.architecture
        assert e.size_class == size_class(e.parameters), e.name
        assert a.attention_heads % a.kv_heads == 0, e.name
        assert a.head_dim in (32, 64, 96, 128, 256), e.name
        assert e.files and all(f.endswith(".gguf") for f in e.files.values())
        # parameters are consistent with the dimensions: at least the embedding table
        assert e.parameters >= a.vocab_size * a.hidden_size * 0.9, e.name


def test_size_classes() -> None:
    assert size_class(135_000_000) == "micro" and size_class(1_400_000_000) == "micro"
    assert size_class(1_500_000_000) == "small" and size_class(13_900_000_000) == "small"
    assert size_class(14_000_000_000) == "medium" and size_class(30_000_000_000) == "medium"
    assert {e.size_class for e in entries(size="medium")} == {"medium"}


def test_unknown_name_suggests_nearest() -> None:
    with pytest.raises(ModelNotFound, match=r"did you mean.*qwen3-8b"):
        find("qwen3-8")
    assert find("llama3.2:3b").name == "llama-3.2-3b"  # aliases


def test_estimate_formula_worked_example() -> None:
    """qwen3-8b at q4_k_m, 4 slots of 4096 tokens: the example in docs/models.md."""
    est = estimate_entry(find("qwen3-8b"), "q4_k_m", ctx=4096, parallel=4)
    assert est.weights_bytes == int(8_191_000_000 * 4.84 / 8)
    assert est.kv_cache_bytes == 2 * 36 * 4096 * 8 * 128 * 2 * 4 == 2_415_919_104
    assert est.output_bytes == 4 * 151936 * 4
    assert est.compute_bytes == 512 * 4 * (8 * 4096 + 2 * 4096)
    assert est.total_bytes == sum((est.weights_bytes, est.kv_cache_bytes, est.output_bytes, est.compute_bytes,
                                   est.runtime_bytes))
    q8_kv = estimate_entry(find("qwen3-8b"), "q4_k_m", ctx=4096, parallel=4, kv_type="q8_0")
    assert q8_kv.kv_cache_bytes == pytest.approx(est.kv_cache_bytes * 34 / 64, rel=1e-6)


def test_estimate_reads_real_dimensions_from_the_gguf() -> None:
    est = estimate_file(EMBEDDED["smollm2-135m-instruct"].path(), ctx=2048, parallel=4)
    assert est.quant == "q4_1"
    assert est.kv_cache_bytes == 2 * 30 * 2048 * 3 * 64 * 2 * 4  # llama.cpp logs 180 MiB for this
    assert est.weights_bytes < est.disk_bytes


def test_estimate_rejects_unknown_types() -> None:
    dims = Dims("x", 10**9, 10, 1024, 8, 128, 128, 32000, 4096)
    with pytest.raises(InvalidRequest, match="unknown quantization"):
        estimate(dims, quant="q9_z")
    with pytest.raises(InvalidRequest, match="unknown KV cache type"):
        estimate(dims, quant="q8_0", kv_type="q3")
    assert parse_size("4G") == 4 << 30 and parse_size("512MiB") == 512 << 20


def test_hardware_probe_finds_this_machine() -> None:
    hw = probe()
    assert hw.ram_total >= hw.ram_available > 0 and hw.cores >= 1 and hw.disk_free > 0
    planned = probe(ram=8 << 30, gpu_mem=24 << 30)
    assert planned.ram_available == 8 << 30 and planned.gpu_memory == 24 << 30
    assert planned.overridden == ["ram", "gpu_mem"]


def _recommend(*args: str) -> dict[str, Any]:
    out = _slm("recommend", *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_recommend_small_and_large_machines_pick_different_sensible_models() -> None:
    small, large = (_recommend("--ram", "4G", "--gpu-mem", "0", "--min-speed", "0"),
                    _recommend("--ram", "64G", "--gpu-mem", "0", "--min-speed", "0"))  # memory only
    s, big = small["choice"], large["choice"]
    assert s["model"] != big["model"]
    assert s["ram_bytes"] <= 0.8 * (4 << 30) and big["ram_bytes"] <= 0.8 * (64 << 30)
    assert 1e9 <= s["parameters"] < 5e9 and s["quant"] in ("q4_k_m", "q5_k_m", "q6_k", "q8_0")
    assert big["parameters"] >= 14e9 and big["class"] == "medium"
    assert small["runners_up"] and all(r["ram_bytes"] <= 0.8 * (4 << 30) for r in small["runners_up"])
    assert any("largest" in line for line in small["reasons"])
    assert "bitnet" not in json.dumps(large)  # needs bitnet.cpp, not our engine


def test_recommend_weighs_speed_and_task_fit() -> None:
    two_cores = _recommend("--ram", "64G", "--gpu-mem", "0", "--cores", "2", "--bandwidth", "8")
    pick = two_cores["choice"]
    assert pick["parameters"] < 5e9 and pick["tokens_per_s"] >= 10, pick  # not a 24B model on 2 cores
    assert any("10 tokens/s" in line for line in two_cores["reasons"])
    big = _recommend("--ram", "64G", "--gpu-mem", "0", "--cores", "32", "--bandwidth", "400")["choice"]
    assert big["parameters"] > 10e9 and big["tokens_per_s"] >= 10
    chat = _recommend("--ram", "64G", "--gpu-mem", "0", "--cores", "16", "--bandwidth", "80")["choice"]
    assert find(chat["model"]).tasks[0] == "chat"  # a coding model is not the pick for chat
    code = _recommend("--task", "code", "--ram", "64G", "--gpu-mem", "0", "--cores", "16", "--bandwidth", "80")
    assert find(code["choice"]["model"]).tasks[0] == "code"
    slow = _recommend("--ram", "8G", "--gpu-mem", "0", "--cores", "1", "--bandwidth", "0.5")
    assert slow["choice"] and any("no chat model reaches" in line for line in slow["reasons"])


def test_speed_estimate_reads_the_weights_once_per_token() -> None:
    from slmkit.catalog.estimate import Dims
    from slmkit.catalog.speed import bytes_per_token, decode_speed

    dims = Dims("m", 10**9, layers=10, hidden_size=1024, kv_heads=2, head_dim_k=64, head_dim_v=64, vocab_size=1000,
                max_context=4096)
    per_token = bytes_per_token(5e8, dims, ctx=1000)
    assert per_token == 5e8 + 10 * 2 * 128 * 2 * 500
    fast, scalar = decode_speed(per_token, 10e9, ["avx2"]), decode_speed(per_token, 10e9, [])
    assert fast > scalar > 0 and decode_speed(per_token * 2, 10e9, ["avx2"]) == fast / 2


def test_recommend_embed_task_and_nothing_fits() -> None:
    embed = _recommend("--task", "embed", "--ram", "8G", "--gpu-mem", "0", "--min-speed", "0")
    assert "embed" in find(embed["choice"]["model"]).tasks
    tiny = _slm("recommend", "--ram", "64M", "--gpu-mem", "0", "--min-speed", "0")
    assert tiny.returncode != 0 and "no chat model" in tiny.stdout


def test_catalog_and_estimate_commands() -> None:
    listing = json.loads(_slm("models", "catalog", "--class", "micro", "--json").stdout)
    assert listing and {m["class"] for m in listing} == {"micro"}
    est = json.loads(_slm("models", "estimate", "qwen3-8b", "--quant", "q8_0", "--ctx", "2048", "--json").stdout)
    assert est["quant"] == "q8_0" and est["kv_cache_bytes"] == 2 * 36 * 2048 * 8 * 128 * 2 * 4
    bad = _slm("models", "estimate", "qwen3-9b")
    assert bad.returncode != 0 and "did you mean" in bad.stderr and "Traceback" not in bad.stderr


def test_catalog_flags_the_mlx_conversions_known_to_work() -> None:
    flagged = {e.name: e.mlx for e in load_catalog() if e.mlx}
    assert flagged == {"smollm2-135m": ("q4", "q8")}  # converted, served and scored by the MLX tests
    assert find("smollm2-135m").raw["mlx"]["tested_on"] == ["linux-cpu"]
