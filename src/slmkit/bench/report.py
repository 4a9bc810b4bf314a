"""The result document (JSON, schema ``slmkit.bench/1``), its Markdown table, and comparisons.

The schema is documented in docs/benchmarks.md; fields are only ever added to it."""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from slmkit import __version__
from slmkit.errors import InvalidRequest

SCHEMA = "slmkit.bench/1"
# (label, key path into a summary row, format); "higher" says which direction is better.
COLUMNS: tuple[tuple[str, str, str, bool], ...] = (
    ("tok/s", "output_tokens_per_s", "{:.1f}", True),
    ("req/s", "requests_per_s", "{:.2f}", True),
    ("TTFT p50 ms", "ttft_p50_ms", "{:.0f}", False),
    ("TTFT p95 ms", "ttft_p95_ms", "{:.0f}", False),
    ("ITL p50 ms", "itl_p50_ms", "{:.1f}", False),
    ("ITL p95 ms", "itl_p95_ms", "{:.1f}", False),
    ("e2e p95 s", "e2e_p95_s", "{:.2f}", False),
    ("tok/s/req p50", "request_tokens_per_s_p50", "{:.1f}", True),
    ("peak RSS MiB", "peak_rss_mib", "{:.0f}", False),
)


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def build_document(*, kind: str, config: dict[str, Any], endpoints: list[dict[str, Any]], runs: list[dict[str, Any]],
                   partial: bool, partial_reason: str | None, started_at: str, command: list[str]) -> dict[str, Any]:
    return {
        "schema": SCHEMA, "kind": kind, "slmkit_version": __version__,
        "started_at": started_at, "finished_at": now_iso(), "command": command,
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
                 "system": platform.system()},
        "partial": partial, "partial_reason": partial_reason,
        "config": config, "endpoints": endpoints, "runs": runs, "summary": summary_rows(runs),
    }


REPORT_MODE = 0o644


def replace_section(docs: Path, begin: str, end: str, text: str) -> None:
    """Put ``text`` (which starts with ``begin`` and ends with ``end``) in place of the section
    between those markers in ``docs``, or at its end; the rest of the file is kept."""
    body = docs.read_text(encoding="utf-8") if docs.exists() else "# Benchmarks\n"
    if begin in body and end in body:
        head, _, rest = body.partition(begin)
        body = head + text + rest.partition(end)[2]
    else:
        body = body.rstrip("\n") + "\n\n" + text + "\n"
    write_atomic(docs, body)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary name beside ``path``, then rename, so no half file has the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, REPORT_MODE)  # mkstemp makes 0600; reports are for others to read too
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _pick(run: dict[str, Any], metric: str, pct: str, scale: float = 1.0) -> float | None:
    dist = run.get(metric)
    return dist[pct] * scale if dist else None


def summary_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (endpoint, mode, level): medians over repeats. A run cut short by a stop
    (Ctrl-C) counts only where its level has no complete run: half a run's figures would move
    the median of whole ones."""
    groups: dict[tuple[str, str, float], list[dict[str, Any]]] = {}
    for run in runs:
        level = run["concurrency"] if run["mode"] == "concurrency" else run["rate"]
        groups.setdefault((run["endpoint"], run["mode"], level), []).append(run)
    rows = []
    for (endpoint, mode, level), runs_of_level in groups.items():
        group = [r for r in runs_of_level if not r.get("interrupted")] or runs_of_level
        rss = [r["resources"]["peak_rss_bytes"] for r in group if r.get("resources")]
        cpu = [r["resources"]["cpu_time_s"] for r in group if r.get("resources")]
        rows.append({
            "endpoint": endpoint, "mode": mode, "level": level, "repeats": len(group),
            "output_tokens_per_s": _median(r["output_tokens_per_s"] for r in group),
            "output_tokens_per_s_runs": [r["output_tokens_per_s"] for r in group],
            "requests_per_s": _median(r["requests_per_s"] for r in group),
            "ttft_p50_ms": _median(_pick(r, "ttft_s", "p50", 1e3) for r in group),
            "ttft_p95_ms": _median(_pick(r, "ttft_s", "p95", 1e3) for r in group),
            "itl_p50_ms": _median(_pick(r, "itl_s", "p50", 1e3) for r in group),
            "itl_p95_ms": _median(_pick(r, "itl_s", "p95", 1e3) for r in group),
            "e2e_p50_s": _median(_pick(r, "e2e_s", "p50") for r in group),
            "e2e_p95_s": _median(_pick(r, "e2e_s", "p95") for r in group),
            "request_tokens_per_s_p50": _median(_pick(r, "request_tokens_per_s", "p50") for r in group),
            "completed_output_tokens": sum(r["completed_output_tokens"] for r in group),
            "requested_output_tokens": sum(r["requested_output_tokens"] for r in group),
            "failed": sum(r["requests"]["failed"] for r in group),
            "peak_rss_mib": max(rss) / 2**20 if rss else None,
            "cpu_time_s": _median(cpu),
        })
    return rows


def _fmt(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def markdown_table(doc: dict[str, Any]) -> str:
    lines = ["| endpoint | level | " + " | ".join(c[0] for c in COLUMNS) + " | completed/requested tokens | failed |",
             "|---|---|" + "---|" * len(COLUMNS) + "---|---|"]
    for row in doc["summary"]:
        level = f"c={row['level']}" if row["mode"] == "concurrency" else f"{row['level']:g} req/s"
        cells = [_fmt(row.get(key), fmt) for _, key, fmt, _ in COLUMNS]
        tokens = f"{row['completed_output_tokens']}/{row['requested_output_tokens']}"
        lines.append(f"| {row['endpoint']} | {level} | " + " | ".join(cells) + f" | {tokens} | {row['failed']} |")
    note = f"\n\n**Partial results**: {doc['partial_reason']}" if doc.get("partial") else ""
    salt = doc.get("config", {}).get("salt")
    if salt:
        note += f"\n\nPrompt salt `{salt}`: each run's prompts started with `[{salt}.N]` (N: the run's number)."
    return "\n".join(lines) + note


def load_document(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{path} is not JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("summary"), list):
        raise InvalidRequest(f"{path} is not an `slm bench` result (schema {SCHEMA})")
    return doc


def compare_rows(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """B / A for every metric, matched by mode and level (and endpoint when both have several)."""
    def key(row: dict[str, Any], single: bool) -> tuple[Any, ...]:
        return (row["mode"], row["level"]) if single else (row["endpoint"], row["mode"], row["level"])

    single = len({r["endpoint"] for r in a["summary"]}) == 1 or len({r["endpoint"] for r in b["summary"]}) == 1
    base = {key(r, single): r for r in a["summary"]}
    rows = []
    for row in b["summary"]:
        ref = base.get(key(row, single))
        if ref is None:
            continue
        ratios = {}
        for _, metric, _, _ in COLUMNS:
            x, y = ref.get(metric), row.get(metric)
            ratios[metric] = y / x if x and y is not None else None
        rows.append({"endpoint_a": ref["endpoint"], "endpoint_b": row["endpoint"], "mode": row["mode"],
                     "level": row["level"], "ratios": ratios})
    if not rows:
        raise InvalidRequest("the two results share no sweep level to compare")
    return rows


def compare_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| A | B | level | " + " | ".join(f"{c[0]} B/A" for c in COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(COLUMNS)]
    for row in rows:
        level = f"c={row['level']}" if row["mode"] == "concurrency" else f"{row['level']:g} req/s"
        cells = [_fmt(row["ratios"][key], "{:.2f}x") for _, key, _, _ in COLUMNS]
        lines.append(f"| {row['endpoint_a']} | {row['endpoint_b']} | {level} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def relative_performance(metric: str, ratio: float) -> float:
    """B's performance relative to A from the ratio B/A: the ratio itself where higher is
    better (tok/s), its inverse where lower is better (latencies, memory); below 1 is worse."""
    higher = {key: better for _, key, _, better in COLUMNS}
    if metric not in higher:
        raise InvalidRequest(f"unknown metric {metric!r}; one of {', '.join(higher)}")
    if higher[metric]:
        return ratio
    return 1.0 / ratio if ratio > 0 else float("inf")


def regressions(rows: list[dict[str, Any]], fail_below: float, metrics: list[str]) -> list[dict[str, Any]]:
    """Every (level, metric) where B performs worse than ``fail_below`` times A. A metric that
    one of the results lacks is an error: a gate must not pass for want of a figure."""
    out = []
    for row in rows:
        level = f"c={row['level']}" if row["mode"] == "concurrency" else f"{row['level']:g} req/s"
        for metric in metrics:
            ratio = row["ratios"].get(metric)
            if ratio is None:
                raise InvalidRequest(f"cannot gate on {metric} at {level}: one of the results has no such figure")
            performance = relative_performance(metric, ratio)
            if performance < fail_below:
                out.append({"metric": metric, "level": level, "endpoint": row["endpoint_b"],
                            "ratio": ratio, "performance": performance})
    return out


def regression_message(found: list[dict[str, Any]], fail_below: float) -> str:
    labels = {key: label for label, key, _, _ in COLUMNS}
    parts = [f"{labels[r['metric']]} at {r['level']} is {r['ratio']:.2f}x the baseline "
             f"({r['performance']:.2f} of its performance)" for r in found]
    return f"performance regression below --fail-below {fail_below:g}: " + "; ".join(parts)
