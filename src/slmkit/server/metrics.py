"""Prometheus metrics (names mirror vLLM's, prefix ``slm_``, label ``model``).

Histograms and counters are observed along each request's event stream; the gauges and the
prefix-cache counter are read from the engines at scrape time, so they are always current.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from slmkit.engine.base import FinishReason, TokenEvent

if TYPE_CHECKING:
    from slmkit.server.registry import ModelRegistry

TTFT_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160)
ITL_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5)
E2E_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160, 320, 640)
QUEUE_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768)
FINISH_LABELS = {FinishReason.STOP: "stop", FinishReason.LENGTH: "length", FinishReason.CANCELLED: "abort",
                 FinishReason.ERROR: "error"}


class Metrics:
    """All of the server's instruments, in a registry of its own."""

    def __init__(self, models: ModelRegistry | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ttft = Histogram("slm_time_to_first_token_seconds", "Time to first token.", ["model"],
                              buckets=TTFT_BUCKETS, registry=r)
        self.itl = Histogram("slm_inter_token_latency_seconds", "Time between two tokens of a sequence.",
                             ["model"], buckets=ITL_BUCKETS, registry=r)
        self.e2e = Histogram("slm_e2e_request_latency_seconds", "Request latency, first byte in to last out.",
                             ["model"], buckets=E2E_BUCKETS, registry=r)
        self.queue = Histogram("slm_request_queue_time_seconds", "Time a sequence waited for a slot.",
                               ["model"], buckets=QUEUE_BUCKETS, registry=r)
        self.prompt_hist = Histogram("slm_request_prompt_tokens", "Prompt tokens per request.", ["model"],
                                     buckets=TOKEN_BUCKETS, registry=r)
        self.gen_hist = Histogram("slm_request_generation_tokens", "Generated tokens per request.", ["model"],
                                  buckets=TOKEN_BUCKETS, registry=r)
        self.prompt_tokens = Counter("slm_prompt_tokens", "Prompt tokens of admitted requests.", ["model"],
                                     registry=r)
        self.gen_tokens = Counter("slm_generation_tokens", "Generated tokens.", ["model"], registry=r)
        self.requests = Counter("slm_requests", "Finished sequences by finish reason.", ["model", "finish_reason"],
                                registry=r)
        self.errors = Counter("slm_request_errors", "Requests answered with an error, by code.", ["code"],
                              registry=r)
        self.rate_limited = Counter("slm_rate_limited", "Requests refused by a key's rate limit.", registry=r)
        if models is not None:
            r.register(EngineCollector(models))

    def request(self, model: str, prompt_tokens: int, choices: int) -> RequestObserver:
        self.prompt_tokens.labels(model).inc(prompt_tokens)
        self.prompt_hist.labels(model).observe(prompt_tokens)
        return RequestObserver(self, model, choices)


class RequestObserver:
    """Watches one request's events and records its latencies and token counts."""

    def __init__(self, metrics: Metrics, model: str, choices: int) -> None:
        self.m = metrics
        self.model = model
        self.start = time.perf_counter()
        self.last: list[float | None] = [None] * choices
        self.counted = [0] * choices
        self.finished = [False] * choices
        self.open = choices

    def on_event(self, index: int, event: TokenEvent) -> int:
        """Record one event; returns how many new tokens it carried."""
        now = time.perf_counter()
        new = event.completion_tokens - self.counted[index]
        if new > 0:
            previous = self.last[index]
            if previous is None:
                self.m.ttft.labels(self.model).observe(now - self.start)
            else:
                self.m.itl.labels(self.model).observe(now - previous)
            self.last[index] = now
            self.counted[index] = event.completion_tokens
            self.m.gen_tokens.labels(self.model).inc(new)
        if event.finish_reason is not None:
            self._finish(index, event, now)
        return max(new, 0)

    def close(self) -> None:
        """The request's events stopped: a choice that never finished was dropped by its client."""
        for index, finished in enumerate(self.finished):
            if not finished:
                self._finish(index, TokenEvent(finish_reason=FinishReason.CANCELLED), time.perf_counter())

    def _finish(self, index: int, event: TokenEvent, now: float) -> None:
        if self.finished[index]:
            return
        self.finished[index] = True
        self.m.requests.labels(self.model, FINISH_LABELS[event.finish_reason]).inc()  # type: ignore[index]
        self.m.gen_hist.labels(self.model).observe(self.counted[index])
        if "queue_s" in event.timings:
            self.m.queue.labels(self.model).observe(event.timings["queue_s"])
        self.open -= 1
        if self.open == 0:
            self.m.e2e.labels(self.model).observe(now - self.start)


class EngineCollector(Collector):
    """Gauges read from the loaded engines at scrape time."""

    def __init__(self, models: ModelRegistry) -> None:
        self.models = models

    def collect(self) -> Iterator[Metric]:
        running = GaugeMetricFamily("slm_requests_running", "Sequences decoding now.", labels=["model"])
        waiting = GaugeMetricFamily("slm_requests_waiting", "Sequences waiting for a slot.", labels=["model"])
        kv = GaugeMetricFamily("slm_kv_cache_usage_ratio", "Share of KV cache cells holding tokens.",
                               labels=["model"])
        memory = GaugeMetricFamily("slm_model_memory_bytes", "Estimated memory of a loaded model (weights + KV cache).",
                                   labels=["model"])
        hits = CounterMetricFamily("slm_prefix_cache_hit_tokens", "Prompt tokens reused from a slot's cache.",
                                   labels=["model"])
        drafted = CounterMetricFamily("slm_spec_draft_tokens", "Prompt-lookup draft tokens verified.",
                                      labels=["model"])
        accepted = CounterMetricFamily("slm_spec_accepted_tokens", "Draft tokens accepted (output tokens that "
                                       "needed no step of their own).", labels=["model"])
        entries = self.models.loaded()
        for entry in entries:
            stats = entry.engine.stats()
            running.add_metric([entry.name], stats.get("running", 0))
            waiting.add_metric([entry.name], stats.get("waiting", 0))
            memory.add_metric([entry.name], float(entry.memory_bytes))
            if "kv_cache_usage_ratio" in stats:  # generation engines (embedders keep no KV cache)
                kv.add_metric([entry.name], stats["kv_cache_usage_ratio"])
                hits.add_metric([entry.name], stats["prefix_cache_hit_tokens_total"])
            if "spec_draft_tokens_total" in stats:  # the llama.cpp engine
                drafted.add_metric([entry.name], stats["spec_draft_tokens_total"])
                accepted.add_metric([entry.name], stats["spec_accepted_tokens_total"])
        loaded = GaugeMetricFamily("slm_models_loaded", "Models loaded now.", value=len(entries))
        yield from _families(running, waiting, kv, memory, hits, drafted, accepted, loaded)


def _families(*families: Metric) -> Iterable[Metric]:
    return families
