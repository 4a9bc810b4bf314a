"""PNG figures of a bench result (matplotlib, Agg backend, no display needed)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from slmkit.bench.report import REPORT_MODE
from slmkit.errors import InvalidRequest


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        from slmkit.install import install_command

        raise InvalidRequest(f"PNG plots need matplotlib: {install_command('bench')}") from exc
    return plt


def save_figure(fig: Any, path: Path) -> Path:
    """Save under a temporary name beside ``path``, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".png", dir=path.parent)
    os.fchmod(fd, REPORT_MODE)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_bench_plots(doc: dict[str, Any], out_dir: Path, prefix: str = "bench") -> list[Path]:
    """tokens/s and TTFT p95 against the sweep level, and the end-to-end latency CDF."""
    plt = _pyplot()
    rows = doc["summary"]
    written: list[Path] = []
    if not rows:
        return written
    mode = rows[0]["mode"]
    xlabel = "concurrent requests" if mode == "concurrency" else "request rate (req/s)"
    endpoints = list(dict.fromkeys(r["endpoint"] for r in rows))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for ep in endpoints:
        mine = sorted((r for r in rows if r["endpoint"] == ep and r["mode"] == mode), key=lambda r: r["level"])
        levels = [r["level"] for r in mine]
        ax1.plot(levels, [r["output_tokens_per_s"] or 0 for r in mine], marker="o", label=ep)
        ax2.plot(levels, [(r["ttft_p95_ms"] or 0) / 1e3 for r in mine], marker="o", label=ep)
    ax1.set(title="Aggregate output tokens/s (median of repeats)", xlabel=xlabel, ylabel="tokens/s")
    ax2.set(title="Time to first token, p95", xlabel=xlabel, ylabel="seconds")
    all_levels = sorted({r["level"] for r in rows if r["mode"] == mode})
    for ax in (ax1, ax2):
        ax.set_xticks(all_levels, [f"{v:g}" for v in all_levels])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_ylim(bottom=0)
    written.append(save_figure(fig, out_dir / f"{prefix}_throughput_ttft.png"))
    plt.close(fig)
    written.append(_cdf(plt, doc, out_dir / f"{prefix}_latency_cdf.png"))
    return written


def _cdf(plt: Any, doc: dict[str, Any], path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6.5, 4))
    series: dict[str, list[float]] = {}
    for run in doc["runs"]:
        level = f"c={run['concurrency']}" if run["mode"] == "concurrency" else f"{run['rate']:g}/s"
        values = [r["e2e_s"] for r in run["per_request"] if r["error_kind"] is None and r["e2e_s"] is not None]
        series.setdefault(f"{run['endpoint']} {level}", []).extend(values)
    for name, values in series.items():
        if values:
            values.sort()
            ax.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post", label=name)
    ax.set(title="End-to-end latency CDF", xlabel="seconds", ylabel="fraction of requests")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    save_figure(fig, path)
    plt.close(fig)
    return path
