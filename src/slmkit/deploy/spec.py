"""What a deployment is: the user's choices, checked and sized from the catalog's memory estimate."""

from __future__ import annotations

import math
from dataclasses import dataclass

from slmkit.catalog.estimate import MIB, estimate_entry, human
from slmkit.catalog.models import CatalogEntry, lookup, suggest
from slmkit.errors import InvalidRequest, ModelNotFound
from slmkit.store.embedded import EMBEDDED

TARGETS = ("docker", "compose", "k8s", "nginx", "ray")
ENGINES = ("llamacpp", "vllm")
UID = 10001
IMAGE = "ghcr.io/slmkit/slmkit:0.1.0"
VLLM_IMAGE = "vllm/vllm-openai:v0.10.1"
GPU_MEMORY_BYTES = 24 * 1024 * MIB  # the smallest common inference GPU (L4, A10G): 24 GiB

# The Hub repositories vLLM loads (safetensors), by catalog name; GGUF repos are for llama.cpp only.
VLLM_REPOS: dict[str, str] = {
    "smollm2-135m": "HuggingFaceTB/SmolLM2-135M-Instruct", "smollm2-360m": "HuggingFaceTB/SmolLM2-360M-Instruct",
    "smollm2-1.7b": "HuggingFaceTB/SmolLM2-1.7B-Instruct", "qwen3-0.6b": "Qwen/Qwen3-0.6B",
    "qwen3-1.7b": "Qwen/Qwen3-1.7B", "qwen3-4b": "Qwen/Qwen3-4B", "qwen3-8b": "Qwen/Qwen3-8B",
    "qwen3-14b": "Qwen/Qwen3-14B", "qwen3-30b-a3b": "Qwen/Qwen3-30B-A3B", "qwen3-32b": "Qwen/Qwen3-32B",
    "gemma-3-270m": "google/gemma-3-270m-it", "gemma-3-1b": "google/gemma-3-1b-it",
    "gemma-3-4b": "google/gemma-3-4b-it", "gemma-3-12b": "google/gemma-3-12b-it",
    "gemma-3-27b": "google/gemma-3-27b-it",
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B-Instruct", "llama-3.2-3b": "meta-llama/Llama-3.2-3B-Instruct",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B-Instruct", "phi-4-mini": "microsoft/Phi-4-mini-instruct",
    "phi-3.5-mini": "microsoft/Phi-3.5-mini-instruct", "phi-4": "microsoft/phi-4",
    "deepseek-r1-distill-qwen-1.5b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B",
    "deepseek-r1-distill-qwen-7b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "mistral-7b": "mistralai/Mistral-7B-Instruct-v0.3",
    "mistral-small-24b": "mistralai/Mistral-Small-24B-Instruct-2501",
    "qwen2.5-coder-1.5b": "Qwen/Qwen2.5-Coder-1.5B-Instruct", "qwen2.5-coder-7b": "Qwen/Qwen2.5-Coder-7B-Instruct",
    "qwen2.5-coder-14b": "Qwen/Qwen2.5-Coder-14B-Instruct",
}
# vLLM's --tool-call-parser per family; families without one get no tool flags.
TOOL_PARSERS = {"qwen3": "hermes", "qwen2.5-coder": "hermes", "llama-3.1": "llama3_json", "llama-3.2": "llama3_json",
                "mistral": "mistral", "phi-4": "phi4_mini_json"}


@dataclass(frozen=True)
class DeployOptions:
    """What the user asked for (`slm deploy` flags)."""

    model: str
    engine: str = "llamacpp"
    replicas: int = 1
    quant: str | None = None
    ctx: int = 2048
    slots: int = 4
    api_keys_secret: str | None = None
    with_webui: bool = False
    bake: bool = False
    namespace: str = "slmkit"
    port: int = 8080
    drain_timeout: int = 30
    memory_budget: int | None = None
    image: str | None = None
    max_replicas: int | None = None
    min_replicas: int | None = None
    target_ongoing_requests: float | None = None
    cache_type_k: str = "f16"  # the server's KV cache types (llama.cpp engine), sized by the estimate
    cache_type_v: str = "f16"


@dataclass(frozen=True)
class Plan:
    """Options plus everything derived from the catalog: sizes, images, the vLLM repo."""

    options: DeployOptions
    entry: CatalogEntry
    served_name: str
    pull_spec: str
    quant: str
    memory_estimate: int
    memory_request: int
    memory_limit: int
    cpu_request: str
    cpu_limit: str
    gpus: int = 0
    vllm_repo: str = ""
    tool_parser: str = ""
    gpu_memory_utilization: float = 0.9
    disk_bytes: int = 0

    @property
    def engine(self) -> str:
        return self.options.engine

    @property
    def vllm(self) -> bool:
        return self.options.engine == "vllm"

    @property
    def image(self) -> str:
        return self.options.image or (VLLM_IMAGE if self.vllm else IMAGE)

    @property
    def grace_seconds(self) -> int:
        return self.options.drain_timeout + 15

    @property
    def max_replicas(self) -> int:
        return self.options.max_replicas or max(self.options.replicas * 4, 2)


def mib(n: int) -> str:
    """Bytes as a Kubernetes/Compose quantity in MiB, rounded up."""
    return f"{math.ceil(n / MIB)}Mi"


EMBEDDED_QUANTS = {"smollm2-135m-instruct": "q4_1", "gemma-3-270m": "q4_k_m"}


def _entry_for(model: str) -> tuple[CatalogEntry, str, str | None, bool]:
    """Catalog entry, the name clients use, the quant asked for, and whether ``model`` is embedded."""
    base, _, tag = model.lower().partition(":")
    entry = lookup(base)
    if entry is None:
        raise ModelNotFound(f"the catalog cannot size '{model}'{suggest(base)}", param="model")
    if base in EMBEDDED and tag in ("", "latest"):
        return entry, base, EMBEDDED_QUANTS.get(base, "q4_k_m"), True
    return entry, entry.name, tag or None, False


def plan(options: DeployOptions) -> Plan:
    """Check the options and size the deployment; raises before anything is written."""
    if options.engine not in ENGINES:
        raise InvalidRequest(f"unknown engine '{options.engine}'; choose one of {', '.join(ENGINES)}", param="engine")
    if options.replicas < 1:
        raise InvalidRequest(f"--replicas must be at least 1, got {options.replicas}", param="replicas")
    if options.min_replicas is not None and options.min_replicas < 0:
        raise InvalidRequest(f"--min-replicas must be at least 0, got {options.min_replicas}", param="min_replicas")
    if options.max_replicas is not None and options.max_replicas < max(1, options.min_replicas or 0):
        raise InvalidRequest("--max-replicas must be at least 1 and at least --min-replicas", param="max_replicas")
    if options.target_ongoing_requests is not None and options.target_ongoing_requests <= 0:
        raise InvalidRequest("--target-ongoing-requests must be above 0", param="target_ongoing_requests")
    if options.slots < 1 or options.ctx < 64:
        raise InvalidRequest("--slots must be >= 1 and --ctx >= 64", param="slots")
    entry, served, asked_quant, embedded = _entry_for(options.model)
    if options.ctx > entry.architecture.max_context:
        raise InvalidRequest(f"--ctx {options.ctx} exceeds {entry.name}'s context of {entry.architecture.max_context}",
                             param="ctx")
    if options.engine == "vllm":
        return _plan_vllm(options, entry)
    if not entry.llama_cpp:
        raise InvalidRequest(f"{entry.name} needs {entry.runtime}; slmkit's llama.cpp engine cannot serve it",
                             param="model")
    quant = asked_quant if embedded and asked_quant else entry.file_for(options.quant or asked_quant)[0]
    est = estimate_entry(entry, quant, ctx=options.ctx, parallel=options.slots, kv_type=options.cache_type_k,
                         kv_type_v=options.cache_type_v)
    total = est.total_bytes
    request = math.ceil(total * 1.15)  # the estimate holds within 15% of a real server's RSS
    limit = math.ceil(total * 1.5)
    if options.memory_budget is not None and options.memory_budget < request:
        raise InvalidRequest(f"{entry.name} ({quant}, ctx {options.ctx} x {options.slots} slots) needs {human(request)}"
                             f"; the budget is {human(options.memory_budget)}", param="memory")
    if options.memory_budget is not None:
        limit = max(request, min(limit, options.memory_budget))
    pull_spec = served if embedded else f"{entry.name}:{quant}"
    cpus = max(1, min(8, options.slots))
    return Plan(options, entry, served, pull_spec, quant, total, request, limit, cpu_request=str(max(1, cpus // 2)),
                cpu_limit=str(cpus), disk_bytes=est.disk_bytes)


def _plan_vllm(options: DeployOptions, entry: CatalogEntry) -> Plan:
    repo = VLLM_REPOS.get(entry.name)
    if repo is None:
        raise InvalidRequest(f"no Hub repository vLLM can load is known for {entry.name}", param="model")
    est = estimate_entry(entry, "bf16", ctx=options.ctx, parallel=options.slots)
    gpu_bytes = est.weights_bytes + est.kv_cache_bytes + est.compute_bytes
    budget = options.memory_budget or GPU_MEMORY_BYTES
    utilization = 0.9
    gpus = max(1, math.ceil(gpu_bytes / (budget * utilization)))
    if gpus > 8 or (options.memory_budget is not None and gpus > 1):
        raise InvalidRequest(f"{entry.name} (bf16, ctx {options.ctx} x {options.slots} seqs) needs {human(gpu_bytes)}"
                             f" of GPU memory; the budget is {human(budget)} per GPU", param="memory")
    host = 4 * 1024 * MIB + est.weights_bytes  # vLLM's process plus a staging copy of the weights
    parser = next((p for fam, p in TOOL_PARSERS.items() if entry.name.startswith(fam)), "")
    return Plan(options, entry, entry.name, repo, "bf16", gpu_bytes, host, math.ceil(host * 1.5), cpu_request="2",
                cpu_limit="8", gpus=gpus, vllm_repo=repo, tool_parser=parser, gpu_memory_utilization=utilization,
                disk_bytes=est.weights_bytes)
