"""/metrics tells the truth: known traffic in, exact counts out."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MODEL
from tests.helpers import ServerProcess

STORY = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]


@pytest.fixture(scope="module")
def metrics_server() -> Iterator[ServerProcess]:
    proc = ServerProcess("--parallel", "2", "--ctx-size", "1024", "--threads", "2")
    yield proc
    proc.close()


def _samples(server: ServerProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _get(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_count_known_traffic(metrics_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=metrics_server.base_url, api_key="x", max_retries=0)
    usages = [client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=5, temperature=0).usage
              for _ in range(3)]
    stream = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=4, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    usages.append(next(c.usage for c in stream if c.usage))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="missing", messages=STORY)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=STORY, temperature=9)

    s = _samples(metrics_server)
    m = {"model": MODEL}
    assert _get(s, "slm_requests_total", finish_reason="length", **m) == 4
    assert _get(s, "slm_generation_tokens_total", **m) == 19
    assert _get(s, "slm_prompt_tokens_total", **m) == sum(u.prompt_tokens for u in usages)
    assert _get(s, "slm_time_to_first_token_seconds_count", **m) == 4
    assert _get(s, "slm_inter_token_latency_seconds_count", **m) == 19 - 4
    assert _get(s, "slm_e2e_request_latency_seconds_count", **m) == 4
    assert _get(s, "slm_request_queue_time_seconds_count", **m) == 4
    assert _get(s, "slm_request_generation_tokens_sum", **m) == 19
    assert _get(s, "slm_request_prompt_tokens_count", **m) == 4
    assert _get(s, "slm_request_errors_total", code="model_not_found") == 1
    assert _get(s, "slm_request_errors_total", code="invalid_request") == 1
    assert _get(s, "slm_prefix_cache_hit_tokens_total", **m) == sum(u.prompt_tokens_details.cached_tokens
                                                                    for u in usages)
    assert _get(s, "slm_prefix_cache_hit_tokens_total", **m) > 0  # the same prompt came back
    assert _get(s, "slm_requests_running", **m) == 0
    assert _get(s, "slm_requests_waiting", **m) == 0
    assert 0 < _get(s, "slm_kv_cache_usage_ratio", **m) < 1
    assert _get(s, "slm_models_loaded") == 1
    assert _get(s, "slm_model_memory_bytes", **m) > 50_000_000
    assert _get(s, "slm_rate_limited_total") == 0
    ttft_sum = _get(s, "slm_time_to_first_token_seconds_sum", **m)
    e2e_sum = _get(s, "slm_e2e_request_latency_seconds_sum", **m)
    assert 0 < ttft_sum < e2e_sum


def test_ready_and_health(metrics_server: ServerProcess) -> None:
    health = httpx.get(f"{metrics_server.url}/health").json()
    assert health["status"] == "ok" and health["engines"][MODEL] == "ok"
    ready = httpx.get(f"{metrics_server.url}/ready")
    assert ready.status_code == 200 and ready.json()["model"] == MODEL
