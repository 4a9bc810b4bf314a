"""scripts/llama_cmake_args.py: AMX CPUs get a native-equivalent build without AMX; others the default."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "llama_cmake_args.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("llama_cmake_args", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_without_amx_keeps_the_native_build() -> None:
    mod = load()
    flags = mod.cpu_flags("processor\t: 0\nflags\t\t: fpu sse4_2 avx avx2 fma f16c bmi2 avx512f\n")
    assert "avx2" in flags
    assert mod.cmake_args(flags) == ""


def test_amx_cpu_gets_each_reported_instruction_set_and_no_amx() -> None:
    mod = load()
    flags = {"sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx512f", "avx512cd", "avx512vl", "avx512dq",
             "avx512bw", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"}
    args = mod.cmake_args(flags).split()
    assert args[0] == "-DGGML_NATIVE=OFF"
    for on in ("GGML_AVX2", "GGML_FMA", "GGML_AVX512", "GGML_AVX512_VNNI"):
        assert f"-D{on}=ON" in args
    for off in ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16"):
        assert f"-D{off}=OFF" in args
    # an instruction set the CPU does not report stays off (its ggml default)
    assert not any(a.startswith("-DGGML_AVX512_BF16") or a.startswith("-DGGML_AVX_VNNI") for a in args)


def test_partial_avx512_is_not_turned_on() -> None:
    mod = load()
    args = mod.cmake_args({"avx2", "avx512f", "amx_int8"}).split()
    assert "-DGGML_AVX512=ON" not in args and "-DGGML_AVX2=ON" in args
