"""CMAKE_ARGS for building llama-cpp-python (and llama-server) on this machine.

Prints nothing where the default build (GGML_NATIVE, i.e. ``-march=native``) is safe. On an x86
CPU that reports AMX, ``-march=native`` compiles ggml's AMX matrix kernels in, and on the
virtual machines this project runs on they crash the process (SIGSEGV in
``ggml_backend_amx_mul_mat``) on the first prompt of more than a few tokens, although the
kernel grants the AMX permission. There this prints a build for the same CPU without AMX:
GGML_NATIVE off and each instruction set the CPU reports turned on by name.

    CMAKE_ARGS="$(python3 scripts/llama_cmake_args.py)" pip install llama-cpp-python==...
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

# ggml's CMake options and the /proc/cpuinfo flags each needs (all of them)
FEATURES = {
    "GGML_SSE42": ("sse4_2",),
    "GGML_AVX": ("avx",),
    "GGML_AVX2": ("avx2",),
    "GGML_FMA": ("fma",),
    "GGML_F16C": ("f16c",),
    "GGML_BMI2": ("bmi2",),
    "GGML_AVX_VNNI": ("avx_vnni",),
    "GGML_AVX512": ("avx512f", "avx512cd", "avx512vl", "avx512dq", "avx512bw"),
    "GGML_AVX512_VBMI": ("avx512vbmi",),
    "GGML_AVX512_VNNI": ("avx512_vnni",),
    "GGML_AVX512_BF16": ("avx512_bf16",),
}
AMX = ("GGML_AMX_TILE", "GGML_AMX_INT8", "GGML_AMX_BF16")


def cpu_flags(cpuinfo: str) -> set[str]:
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cmake_args(flags: set[str]) -> str:
    if not any(f.startswith("amx") for f in flags):
        return ""
    on = [opt for opt, needs in FEATURES.items() if all(n in flags for n in needs)]
    return " ".join(["-DGGML_NATIVE=OFF", *(f"-D{o}=ON" for o in on), *(f"-D{o}=OFF" for o in AMX)])


def main() -> int:
    info = Path("/proc/cpuinfo")
    if platform.machine() not in ("x86_64", "AMD64") or not info.exists():
        return 0
    print(cmake_args(cpu_flags(info.read_text(errors="replace"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
