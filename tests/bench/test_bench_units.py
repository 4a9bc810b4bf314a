"""Pure parts of the bench: endpoint specs, workloads, statistics, the Ollama final line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmkit.bench.protocols import Endpoint, _ollama_event, _openai_event
from slmkit.bench.records import RequestRecord, distribution, summarize
from slmkit.bench.workload import fixed_workload, mixed_workload
from slmkit.errors import InvalidRequest


@pytest.mark.parametrize("spec, label, root, api, model", [
    ("http://h:1", "h:1", "http://h:1", "openai", None),
    ("http://h:1/v1/", "h:1", "http://h:1", "openai", None),
    ("a=http://h:1/v1/chat/completions#m", "a", "http://h:1", "openai", "m"),
    ("ollama+http://h:11434", "h:11434", "http://h:11434", "ollama", None),
    ("o=ollama+https://h/api/chat#llama3.2", "o", "https://h", "ollama", "llama3.2"),
    ("http://h:1/prefix/v1", "h:1/prefix", "http://h:1/prefix", "openai", None),
])
def test_endpoint_spec(spec: str, label: str, root: str, api: str, model: str | None) -> None:
    ep = Endpoint.parse(spec)
    assert (ep.label, ep.root, ep.api, ep.model) == (label, root, api, model)


def test_endpoint_spec_rejects_non_urls() -> None:
    with pytest.raises(InvalidRequest, match="not an http"):
        Endpoint.parse("ftp://h:1")


def test_workloads() -> None:
    fixed = fixed_workload(40, 7, variants=4)
    assert len({p.messages[0]["content"] for p in fixed.prompts}) == 4
    assert all(p.max_tokens == 7 for p in fixed.prompts) and fixed.ignore_eos
    assert fixed.item(5) == fixed.prompts[1]
    unique = fixed_workload(40, 7)  # the default: a prompt of its own for every request
    assert len({unique.item(i).messages[0]["content"] for i in range(50)}) == 50
    assert unique.item(3) == unique.item(3) and unique.ignore_eos
    assert max(p.max_tokens for p in mixed_workload(20).prompts) == 20


def test_distribution_and_summary() -> None:
    dist = distribution([3.0, 1.0, 2.0, 10.0])
    assert dist is not None and dist["min"] == 1 and dist["max"] == 10 and dist["p50"] == 2.5
    assert distribution([]) is None
    ok = RequestRecord(index=0, start_s=0, ttft_s=0.1, e2e_s=1.1, output_tokens=11, max_tokens=16, finish_reason="stop",
                       chunk_times=[0.1, 0.2, 0.4])
    bad = RequestRecord(index=1, start_s=0.5, e2e_s=0.01, error_kind="http_500", error="boom")
    run = summarize([ok, bad], 2.0)
    assert run["requests"] == {"sent": 2, "completed": 1, "failed": 1} and run["errors"] == {"http_500": 1}
    assert run["output_tokens_per_s"] == 5.5 and ok.tokens_per_s == pytest.approx(10.0)
    assert run["itl_s"]["count"] == 2 and run["itl_s"]["max"] == pytest.approx(0.2)


def test_ollama_final_line_and_openai_usage() -> None:
    record = RequestRecord(index=0, start_s=0)
    assert _ollama_event(json.dumps({"message": {"role": "assistant", "content": "Hi"}, "done": False}), record, 0.2)
    final = {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "length",
             "eval_count": 9, "prompt_eval_count": 21, "total_duration": 2_000_000_000, "eval_duration": 1_500_000_000}
    assert not _ollama_event(json.dumps(final), record, 2.0)
    assert (record.output_tokens, record.prompt_tokens, record.token_source) == (9, 21, "usage")
    assert record.finish_reason == "length" and record.ttft_s == 0.2
    assert record.server_timing == {"total_duration_s": 2.0, "eval_duration_s": 1.5}
    err = RequestRecord(index=1, start_s=0)
    assert not _ollama_event('{"error": "model not found"}', err, 0.1) and err.error_kind == "stream_error"
    sse = RequestRecord(index=2, start_s=0)
    assert _openai_event('data: {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}', sse, 1)
    assert not _openai_event("data: [DONE]", sse, 1) and sse.output_tokens == 3


def test_reports_are_readable_by_others(tmp_path: Path) -> None:
    """Reports go through a temporary file (mkstemp makes 0600) but end up 0644."""
    from slmkit.bench.report import write_atomic

    target = tmp_path / "r.json"
    write_atomic(target, "{}")
    assert target.stat().st_mode & 0o777 == 0o644 and target.read_text() == "{}"


def test_replace_section_keeps_the_rest(tmp_path: Path) -> None:
    """What benchmarks/serving.py and engines.py use to write their docs section."""
    from slmkit.bench.report import replace_section

    docs = tmp_path / "b.md"
    docs.write_text("# B\n\nintro\n<!-- x:begin -->\nold\n<!-- x:end -->\ntail\n")
    replace_section(docs, "<!-- x:begin -->", "<!-- x:end -->", "<!-- x:begin -->\nnew\n<!-- x:end -->")
    assert docs.read_text() == "# B\n\nintro\n<!-- x:begin -->\nnew\n<!-- x:end -->\ntail\n"
    other = tmp_path / "c.md"
    replace_section(other, "<a>", "</a>", "<a>1</a>")
    assert other.read_text() == "# Benchmarks\n\n<a>1</a>\n"


def _run(endpoint: str, tok_s: float, interrupted: bool) -> dict[str, object]:
    stats = {"p50": 0.1, "p95": 0.2}
    return {"endpoint": endpoint, "mode": "concurrency", "concurrency": 1, "rate": None, "interrupted": interrupted,
            "output_tokens_per_s": tok_s, "requests_per_s": 1.0, "ttft_s": stats, "itl_s": stats, "e2e_s": stats,
            "request_tokens_per_s": stats, "completed_output_tokens": 10, "requested_output_tokens": 10,
            "requests": {"failed": 0}, "resources": None}


def test_a_run_cut_short_counts_only_where_it_is_all_there_is() -> None:
    from slmkit.bench.report import summary_rows

    rows = {r["endpoint"]: r for r in summary_rows([_run("a", 50.0, False), _run("a", 60.0, False),
                                                      _run("a", 1.0, True), _run("b", 7.0, True)])}
    assert rows["a"]["repeats"] == 2 and rows["a"]["output_tokens_per_s"] == 55.0
    assert rows["b"]["repeats"] == 1 and rows["b"]["output_tokens_per_s"] == 7.0
