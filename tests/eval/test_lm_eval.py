"""lm-evaluation-harness against a real ``slm serve``: its ``local-completions`` model on a
log-likelihood multiple-choice task (``echo`` + ``logprobs`` + ``max_tokens``, the server's
remote tokenizer routes) and its ``local-chat-completions`` model on a generate-until task.

Offline: both tasks are YAML task files written here, over data built from what ``slm eval``
ships (a cloze task from the Coriolanus text; the built-in task suite's single-turn cases),
loaded through ``datasets``' local JSON builder with the hubs switched off; the tokenizer is the
server's own (``/tokenizer_info``, ``/tokenize``, ``/detokenize``), so nothing is downloaded.

The scores are compared with slmkit's own scoring of the same items:
* multiple choice: ``slm eval``'s log-likelihood machinery (``eval.perplexity.LogitSource``: one
  sequence, logits at every position, in process, not through the server) on the very token
  split lm-eval makes; every choice's log-likelihood within 0.02 nats, the same accuracy;
* generate-until: ``slm eval``'s task runner (``eval.tasks.run_suite``, greedy, in process) and
  its checks; lm-eval's per-item verdicts use the same ``check`` (``process_results``), so the
  two differ only by what the model wrote through the server and in process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slmkit.engine.llamacpp.engine import LlamaCppEngine
from slmkit.eval.perplexity import LogitSource, default_text, log_softmax
from slmkit.eval.tasks import builtin_suite, run_suite
from slmkit.settings import EngineSettings
from slmkit.store.embedded import EMBEDDED
from tests.conftest import MODEL
from tests.helpers import ServerProcess

lm_eval = pytest.importorskip("lm_eval")
pytestmark = pytest.mark.slow  # minutes on a busy 2-core machine (two evaluations, two in-process references)

CLOZE_ITEMS = 24
SUITE_ITEMS = 8
MC_YAML = """\
task: slm_cloze
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: gold
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""
GEN_YAML = """\
task: slm_suite
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "{{{{prompt}}}}"
doc_to_target: "{{{{id}}}}"
generation_kwargs:
  until: ["<|im_end|>"]
  max_gen_toks: 32
  do_sample: false
  temperature: 0
process_results: !function utils.process_results
metric_list:
  - metric: passed
    aggregation: mean
    higher_is_better: true
"""
UTILS = '''\
from slmkit.eval.tasks import builtin_suite, check

CASES = {case.id: case for case in builtin_suite()}


def process_results(doc, results):
    return {"passed": float(not check(CASES[doc["id"]], results[0]))}
'''


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # a fresh cache: nothing read from earlier runs
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.setenv("OPENAI_API_KEY", "unused")


def cloze_items() -> list[dict[str, Any]]:
    """Lines of the shipped text: the context is a line less its last two words; the choices are
    those two words and the last two words of a line further on (the gold one first or second)."""
    lines = [line.strip() for line in default_text().splitlines()]
    lines = [line for line in lines if len(line.split()) >= 7 and not line.endswith(":")][:CLOZE_ITEMS + 9]
    items = []
    for i in range(CLOZE_ITEMS):
        words, other = lines[i].split(), lines[i + 9].split()
        right, wrong = " ".join(words[-2:]), " ".join(other[-2:])
        choices = [right, wrong] if i % 2 == 0 else [wrong, right]
        items.append({"context": " ".join(words[:-2]), "choices": choices, "gold": i % 2})
    return items


def suite_items() -> list[dict[str, Any]]:
    """The built-in suite's single-turn cases with the default length and no stop strings."""
    cases = [c for c in builtin_suite() if len(c.messages) == 1 and c.max_tokens == 32 and not c.stop]
    return [{"id": c.id, "prompt": c.messages[0]["content"]} for c in cases[:SUITE_ITEMS]]


def write_task(folder: Path, name: str, template: str, items: list[dict[str, Any]]) -> None:
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    (folder / f"{name}.yaml").write_text(template.format(data=data), encoding="utf-8")


def evaluate(server: ServerProcess, folder: Path, model: str, task: str, **kwargs: Any) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    route = "chat/completions" if model == "local-chat-completions" else "completions"
    args = {"model": MODEL, "base_url": f"{server.base_url}/{route}", "num_concurrent": 2, "max_retries": 3,
            "timeout": 900}  # generous: a loaded CI machine is slow, never wrong
    tasks = TaskManager(include_path=str(folder), include_defaults=False)  # only ours: no index of hundreds
    results = simple_evaluate(model=model, model_args=args, tasks=[task], task_manager=tasks, log_samples=True,
                              bootstrap_iters=0, **kwargs)
    assert results is not None
    return results  # type: ignore[no-any-return]


def test_loglikelihood_multiple_choice_matches_slm_eval(server: ServerProcess, tmp_path: Path) -> None:
    items = cloze_items()
    write_task(tmp_path, "slm_cloze", MC_YAML, items)
    results = evaluate(server, tmp_path, "local-completions", "slm_cloze", batch_size=4)
    samples = sorted(results["samples"]["slm_cloze"], key=lambda s: s["doc_id"])
    assert len(samples) == CLOZE_ITEMS
    served = [[float(r[0]) for r in s["filtered_resps"]] for s in samples]

    source = LogitSource(EMBEDDED[MODEL].path(), window=512, threads=2)
    try:
        direct = [[loglikelihood(source, item["context"], " " + choice) for choice in item["choices"]]
                  for item in items]
    finally:
        source.close()
    print(f"lm-eval vs slm eval log-likelihoods: max |diff| {np.abs(np.subtract(served, direct)).max():.2e} nats")
    assert np.asarray(served) == pytest.approx(np.asarray(direct), abs=0.02)
    acc = float(np.mean([int(np.argmax(d)) == item["gold"] for d, item in zip(direct, items, strict=True)]))
    print(f"acc: lm-eval {results['results']['slm_cloze']['acc,none']}, slm eval scoring {acc}")
    assert results["results"]["slm_cloze"]["acc,none"] == pytest.approx(acc)
    assert acc > 0.6  # the model knows the text's words better than words from elsewhere


def loglikelihood(source: LogitSource, context: str, continuation: str) -> float:
    """log p(continuation | context) on lm-eval's token split: the whole text's tokens, the
    continuation being those after the context's own tokens (no BOS: lm-eval adds none)."""
    model = source.model
    whole = model.tokenize(context + continuation, add_special=False, parse_special=True)
    start = len(model.tokenize(context, add_special=False, parse_special=True))
    logp = log_softmax(source.logits(whole))
    return float(sum(logp[i - 1, whole[i]] for i in range(start, len(whole))))


def test_generate_until_matches_slm_eval(server: ServerProcess, tmp_path: Path) -> None:
    items = suite_items()
    (tmp_path / "utils.py").write_text(UTILS, encoding="utf-8")
    write_task(tmp_path, "slm_suite", GEN_YAML, items)
    results = evaluate(server, tmp_path, "local-chat-completions", "slm_suite", apply_chat_template=True)
    samples = sorted(results["samples"]["slm_suite"], key=lambda s: s["doc_id"])
    assert len(samples) == len(items) == SUITE_ITEMS
    served = {s["doc"]["id"]: s["passed"] for s in samples}

    wanted = {item["id"] for item in items}
    engine = LlamaCppEngine(MODEL, EMBEDDED[MODEL].path(), EngineSettings(parallel=2, ctx_size=1024, threads=2))
    try:
        own = {r.id: float(r.passed) for r in run_suite(engine, [c for c in builtin_suite() if c.id in wanted], 2)}
    finally:
        engine.close()
    differ = [i for i in wanted if served[i] != own[i]]
    print(f"lm-eval passed {sum(served.values())}/{len(items)}, slm eval {sum(own.values())}; differ: {differ}")
    assert len(differ) <= 1, differ  # greedy both ways: at most a near-tie apart
    rate = results["results"]["slm_suite"]["passed,none"]
    assert rate == pytest.approx(sum(served.values()) / len(items))
    assert abs(rate - sum(own.values()) / len(items)) <= 1 / len(items)
