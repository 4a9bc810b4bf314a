"""Quality gates for `slm eval`: a pass-rate floor and a perplexity ceiling, for CI.

A gate is checked on every model of the result; each check is recorded in the result document
under ``gates`` (``{"gate", "model", "value", "threshold", "passed"}``) so a report shows which
model broke which bound."""

from __future__ import annotations

from typing import Any

from slmkit.errors import InvalidRequest


def check_gate_inputs(min_pass_rate: float | None, max_perplexity: float | None, has_tasks: bool,
                      has_perplexity: bool) -> None:
    """A gate needs the measurement it bounds (checked before any model is loaded)."""
    if min_pass_rate is not None and not has_tasks:
        raise InvalidRequest("--min-pass-rate needs the task suite: drop --no-tasks")
    if max_perplexity is not None and not has_perplexity:
        raise InvalidRequest("--max-perplexity needs perplexity: drop --no-perplexity")


def evaluate_gates(doc: dict[str, Any], min_pass_rate: float | None,
                   max_perplexity: float | None) -> list[dict[str, Any]]:
    """One entry per (gate, model); a missing measurement fails its gate."""
    gates: list[dict[str, Any]] = []
    for model in doc["models"]:
        if min_pass_rate is not None:
            rate = ((model.get("tasks") or {}).get("pass_rates") or {}).get("all")
            value = rate["rate"] if rate else None
            gates.append({"gate": "min_pass_rate", "model": model["name"], "value": value,
                          "threshold": min_pass_rate, "passed": value is not None and value >= min_pass_rate,
                          "detail": f"{rate['passed']}/{rate['total']} cases" if rate else "no task results"})
        if max_perplexity is not None:
            ppl = (model.get("perplexity") or {}).get("perplexity")
            gates.append({"gate": "max_perplexity", "model": model["name"], "value": ppl,
                          "threshold": max_perplexity, "passed": ppl is not None and ppl <= max_perplexity,
                          "detail": "" if ppl is not None else "no perplexity"})
    return gates


def failure_message(gates: list[dict[str, Any]]) -> str | None:
    """One line naming every failed gate, or None when all passed."""
    failed = [_describe(g) for g in gates if not g["passed"]]
    if not failed:
        return None
    return "quality gate failed: " + "; ".join(failed)


def _describe(gate: dict[str, Any]) -> str:
    value = gate["value"]
    if gate["gate"] == "min_pass_rate":
        got = f"pass rate {value:.0%} ({gate['detail']})" if value is not None else gate["detail"]
        return f"{gate['model']}: {got}, below --min-pass-rate {gate['threshold']:g}"
    got = f"perplexity {value:.3f}" if value is not None else gate["detail"]
    return f"{gate['model']}: {got}, above --max-perplexity {gate['threshold']:g}"


def gates_table(gates: list[dict[str, Any]]) -> str:
    lines = ["| gate | model | value | threshold | result |", "|---|---|---|---|---|"]
    for g in gates:
        value = "-" if g["value"] is None else (f"{g['value']:.0%}" if g["gate"] == "min_pass_rate"
                                                else f"{g['value']:.3f}")
        lines.append(f"| {g['gate']} | {g['model']} | {value} | {g['threshold']:g} | "
                     f"{'pass' if g['passed'] else 'FAIL'} |")
    return "\n".join(lines)
