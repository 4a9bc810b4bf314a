"""Embedding throughput and the cost of grammar-constrained sampling, in process.

Usage: .venv/bin/python benchmarks/embeddings_and_grammar.py [--repeats 3]

1. all-MiniLM-L6-v2 through llama.cpp (converted GGUF, F16, 2 threads): sentences/s for single
   sentences and for batches of 32, against sentence-transformers on the same sentences.
2. SmolLM2-135M greedy decoding of 30 tokens with no grammar, with a tool-call grammar and with
   the any-JSON-object grammar: ms per generated token, with the lazy grammar check (what the
   server does) and with the grammar applied to the whole vocabulary at every step.
Medians of the repeats; the variants are run alternately so machine noise hits all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import llama_cpp as ll

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from slmkit.engine.base import GenerationRequest, SamplingParams
from slmkit.engine.llamacpp import sampler as sampler_module
from slmkit.engine.llamacpp.embedding import LlamaCppEmbedder
from slmkit.engine.llamacpp.engine import LlamaCppEngine
from slmkit.engine.llamacpp.grammar import json_object_grammar
from slmkit.server.tools import parse_tools, plan_tools, prepare_messages
from slmkit.settings import EngineSettings
from slmkit.store.embedded import EMBEDDED, EmbeddedSentenceTransformer

SENTENCES = [f"Sentence number {i} talks about {topic} in a plain, ordinary way." for i, topic in
             enumerate(["the sea", "a robot", "green tea", "mountains", "a violin", "the moon", "bread",
                        "winter"] * 4)]


def bench_embeddings(repeats: int) -> dict[str, list[float]]:
    minilm = EMBEDDED["all-minilm-l6-v2"]
    assert isinstance(minilm, EmbeddedSentenceTransformer)
    engine = LlamaCppEmbedder("minilm", minilm.path(), EngineSettings(threads=2))
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(minilm.source_dir()), device="cpu")
    tokens = [engine.tokenize(s) for s in SENTENCES]
    out: dict[str, list[float]] = {k: [] for k in ("llama.cpp single", "llama.cpp batch 32",
                                                   "sentence-transformers single",
                                                   "sentence-transformers batch 32")}
    for _ in range(repeats):
        start = time.perf_counter()
        for t in tokens:
            asyncio.run(engine.embed([t]))
        out["llama.cpp single"].append(len(tokens) / (time.perf_counter() - start))
        start = time.perf_counter()
        asyncio.run(engine.embed(tokens))
        out["llama.cpp batch 32"].append(len(tokens) / (time.perf_counter() - start))
        start = time.perf_counter()
        for s in SENTENCES:
            reference.encode([s])
        out["sentence-transformers single"].append(len(tokens) / (time.perf_counter() - start))
        start = time.perf_counter()
        reference.encode(SENTENCES, batch_size=32)
        out["sentence-transformers batch 32"].append(len(tokens) / (time.perf_counter() - start))
    engine.close()
    return out


class _EagerSampler(sampler_module.Sampler):
    """The grammar as one more stage of the chain: applied to every candidate at every step."""

    def __init__(self, model: Any, params: SamplingParams) -> None:
        super().__init__(model, SamplingParams(**{**params.__dict__, "grammar": None}))
        if params.grammar:
            chain = ll.llama_sampler_chain_init(ll.llama_sampler_chain_default_params())
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_grammar(model.vocab, params.grammar.encode(),
                                                                            b"root"))
            ll.llama_sampler_chain_add(chain, ll.llama_sampler_init_greedy())
            ll.llama_sampler_free(self.chain)
            self.chain = chain


def bench_grammar(repeats: int) -> dict[str, list[float]]:
    engine = LlamaCppEngine("s", EMBEDDED["smollm2-135m-instruct"].path(),
                            EngineSettings(threads=2, parallel=1, ctx_size=1024))
    tools = parse_tools([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}])
    plan = plan_tools(tools, "required", True)
    assert plan is not None
    messages, rendered_tools = prepare_messages(engine, [{"role": "user", "content": "Weather in Paris?"}], plan)
    prompt = engine.chat_tokens(engine.render_chat(messages, tools=rendered_tools))
    grammars = {"none": None, "tool call": plan.grammar, "json object": json_object_grammar()}

    async def run(grammar: str | None) -> float:
        stream = engine.generate(GenerationRequest(prompt=prompt, max_tokens=30,
                                                   sampling=SamplingParams(temperature=0, grammar=grammar)))
        last: Any = None
        async for event in stream:
            last = event
        return 1000 * last.timings["generation_s"] / max(1, last.completion_tokens - 1)

    out: dict[str, list[float]] = {}
    original = sampler_module.Sampler
    for _ in range(repeats):
        for label, grammar in grammars.items():
            for mode in ("lazy", "eager") if grammar else ("-",):
                sampler_module.Sampler = _EagerSampler if mode == "eager" else original  # type: ignore[misc]
                import slmkit.engine.llamacpp.scheduler as scheduler_module

                scheduler_module.Sampler = sampler_module.Sampler  # type: ignore[misc]
                out.setdefault(f"{label} ({mode})", []).append(asyncio.run(run(grammar)))
    engine.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for title, results, unit in (("embeddings", bench_embeddings(args.repeats), "sentences/s"),
                                 ("grammar", bench_grammar(args.repeats), "ms/token")):
        print(f"## {title}")
        for label, values in results.items():
            runs = ", ".join(f"{v:.1f}" for v in values)
            print(f"| {label} | {statistics.median(values):.1f} {unit} | {runs} |")


if __name__ == "__main__":
    main()
