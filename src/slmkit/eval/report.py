"""The eval result (JSON, schema ``slmkit.eval/1``), its Markdown tables and a PNG bar chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from slmkit.eval.gates import gates_table

SCHEMA = "slmkit.eval/1"


def _f(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def markdown_tables(doc: dict[str, Any]) -> str:
    models = doc["models"]
    lines = ["| model | size MiB | perplexity | ppl ratio vs ref | mean KL | p99 KL | top-1 agreement | tasks passed |",
             "|---|---|---|---|---|---|---|---|"]
    for m in models:
        ppl = (m.get("perplexity") or {}).get("perplexity")
        d = m.get("drift") or {}
        tasks = (m.get("tasks") or {}).get("pass_rates", {}).get("all")
        lines.append(f"| {m['name']} | {m['size_bytes'] / 2**20:.1f} | {_f(ppl, '{:.3f}')} | "
                     f"{_f(d.get('perplexity_ratio'), '{:.4f}')} | {_f(d.get('kl_mean'), '{:.5f}')} | "
                     f"{_f(d.get('kl_p99'), '{:.4f}')} | {_f(d.get('top1_agreement'), '{:.2%}')} | "
                     f"{_f(tasks and tasks['passed'], '{}')}/{_f(tasks and tasks['total'], '{}')} |")
    task_names = list(dict.fromkeys(t for m in models for t in (m.get("tasks") or {}).get("pass_rates", {})))
    if task_names:
        lines += ["", "| task | " + " | ".join(m["name"] for m in models) + " |", "|---|" + "---|" * len(models)]
        for task in task_names:
            cells = []
            for m in models:
                rate = (m.get("tasks") or {}).get("pass_rates", {}).get(task)
                cells.append(f"{rate['passed']}/{rate['total']} ({rate['rate']:.0%})" if rate else "-")
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
    if doc.get("gates"):
        lines += ["", gates_table(doc["gates"])]
    if doc.get("partial"):
        lines += ["", f"**Partial results**: {doc['partial_reason']}"]
    return "\n".join(lines)


def write_eval_plot(doc: dict[str, Any], path: Path) -> Path:
    """Per-task pass rates by model, and perplexity by model."""
    from slmkit.bench.plots import _pyplot, save_figure

    plt = _pyplot()
    models = doc["models"]
    tasks = [t for t in dict.fromkeys(t for m in models for t in (m.get("tasks") or {}).get("pass_rates", {}))]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 1]})
    width = 0.8 / max(1, len(models))
    for i, m in enumerate(models):
        rates = (m.get("tasks") or {}).get("pass_rates", {})
        xs = [j + i * width for j in range(len(tasks))]
        ax1.bar(xs, [100 * rates[t]["rate"] if t in rates else 0 for t in tasks], width, label=m["name"])
    ax1.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, rotation=20, fontsize=8)
    ax1.set(title="Task suite: pass rate per task", ylabel="% passed", ylim=(0, 105))
    ax1.legend(fontsize=8)
    ppl = [(m["name"], (m.get("perplexity") or {}).get("perplexity")) for m in models]
    ppl = [(n, v) for n, v in ppl if v is not None]
    ax2.bar([n for n, _ in ppl], [v for _, v in ppl], color="tab:gray")
    ax2.set(title="Perplexity (lower is better)")
    ax2.tick_params(axis="x", labelrotation=20, labelsize=8)
    for ax in (ax1, ax2):
        ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)
    plt.close(fig)
    return path
