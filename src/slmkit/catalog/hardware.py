"""What this machine has: memory, cores, CPU features, GPUs, free disk."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FEATURES = ("avx", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "fma", "f16c", "neon", "asimd", "sve", "dotprod")


@dataclass(frozen=True)
class GPU:
    name: str
    memory_total: int
    memory_free: int
    vendor: str = "nvidia"


@dataclass(frozen=True)
class Hardware:
    ram_total: int
    ram_available: int
    cores: int
    cpu_features: list[str]
    machine: str
    gpus: list[GPU] = field(default_factory=list)
    disk_free: int = 0
    overridden: list[str] = field(default_factory=list)
    physical_cores: int = 0  # 0: unknown (then ``cores``)
    memory_bandwidth: float = 0.0  # bytes/s the physical cores read together; 0: not measured
    load_average: float = 0.0  # 1-minute load when probed

    @property
    def gpu_memory(self) -> int:
        return sum(g.memory_free for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _meminfo() -> tuple[int, int]:
    try:
        values = {}
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
        return values["MemTotal"], values.get("MemAvailable", values["MemFree"])
    except (OSError, KeyError, ValueError, IndexError):
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return pages * size, pages * size // 2


def available_memory() -> int:
    """Bytes this process could still allocate: MemAvailable, within a cgroup's memory limit."""
    available = _meminfo()[1]
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = min(available, max(0, int(limit) - used))
    except (OSError, ValueError):
        pass
    return available


def _cpu_features() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags: set[str] = set()
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            flags.update(line.partition(":")[2].split())
    if platform.machine().lower() in ("arm64", "aarch64"):
        flags.add("neon")  # mandatory on 64-bit ARM
    return [f for f in FEATURES if f in flags]


def _nvidia_gpus() -> list[GPU]:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,memory.free", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            gpus.append(GPU(parts[0], int(parts[1]) << 20, int(parts[2]) << 20))
    return gpus


def physical_cores() -> int:
    """Cores this process may run on, counting SMT siblings once (llama.cpp's best thread count)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    pairs: set[tuple[str, str]] = set()
    physical = core = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = (part.strip() for part in line.partition(":"))
            if key == "physical id":
                physical = value
            elif key == "core id":
                core = value
                pairs.add((physical, core))
    except OSError:
        pass
    logical = os.cpu_count() or 1
    smt = max(1, logical // len(pairs)) if pairs else 1
    return max(1, min(usable, logical // smt if pairs else usable))


def load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def probe(store_home: Path | None = None, *, ram: int | None = None, gpu_mem: int | None = None,
          cores: int | None = None, bandwidth: float | None = None, measure: bool = False) -> Hardware:
    """Probe the machine; ``ram`` / ``gpu_mem`` (bytes), ``cores`` and ``bandwidth`` (bytes/s)
    replace what was found, to plan for another one. ``measure``: time the memory bandwidth
    (about a quarter of a second, see ``catalog.speed``)."""
    total, available = _meminfo()
    overridden = []
    if ram is not None:
        total = available = ram
        overridden.append("ram")
    gpus = _nvidia_gpus()
    if gpu_mem is not None:
        gpus = [GPU("planned GPU", gpu_mem, gpu_mem, vendor="planned")] if gpu_mem > 0 else []
        overridden.append("gpu_mem")
    disk_dir = store_home if store_home is not None else Path.home()
    while not disk_dir.exists() and disk_dir != disk_dir.parent:
        disk_dir = disk_dir.parent
    physical = physical_cores()
    if cores is not None:
        physical = cores
        overridden.append("cores")
    measured = 0.0
    if bandwidth is not None:
        measured = bandwidth
        overridden.append("bandwidth")
    elif measure:
        from slmkit.catalog.speed import measure_bandwidth

        measured = measure_bandwidth(physical)
    return Hardware(ram_total=total, ram_available=available, cores=cores or os.cpu_count() or 1,
                    cpu_features=_cpu_features(), machine=platform.machine(), gpus=gpus,
                    disk_free=shutil.disk_usage(disk_dir).free, overridden=overridden, physical_cores=physical,
                    memory_bandwidth=measured, load_average=load_average())
