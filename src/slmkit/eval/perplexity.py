"""Perplexity with a sliding window, and drift between two models on the same text, computed
from llama.cpp's logits for every position (like llama-perplexity and its KL-divergence mode)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.engine.llamacpp.bindings import Batch, Context, Model
from slmkit.errors import EngineError, InvalidRequest

DEFAULT_TEXT = "coriolanus.txt"


def default_text() -> str:
    """The public-domain text shipped with the package (Shakespeare, Coriolanus, Act I)."""
    return resources.files("slmkit.eval").joinpath("data", DEFAULT_TEXT).read_text(encoding="utf-8")


def read_text(path: Path | None) -> tuple[str, str]:
    """(text, its name): a user's file, or the shipped default."""
    if path is None:
        return default_text(), f"{DEFAULT_TEXT} (shipped)"
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except OSError as exc:
        raise InvalidRequest(f"cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError:
        raise InvalidRequest(f"{path} is not UTF-8 text") from None


@dataclass(frozen=True)
class Window:
    start: int  # first token of the window
    end: int  # one past its last token
    first_scored: int  # first position whose prediction is scored (predicted from position - 1)


def windows(n_tokens: int, size: int, stride: int) -> list[Window]:
    """Sliding windows that score every token after the first exactly once; each scored
    token after the first window sees at least ``size - stride`` tokens of context (windows
    overlap by at least one token, so a stride equal to the window acts as ``size - 1``)."""
    if not 0 < stride <= size:
        raise InvalidRequest("stride must be between 1 and the window size")
    if n_tokens < size:
        raise InvalidRequest(f"the eval text has {n_tokens} tokens, fewer than one window of {size}; "
                             "use a longer text or a smaller --window")
    out, start, scored_to = [], 0, 1
    while True:
        end = min(start + size, n_tokens)
        out.append(Window(start, end, scored_to))
        scored_to = end
        if end == n_tokens:
            return out
        start = min(start + stride, end - 1)  # keep one token of overlap: it predicts the next


class LogitSource:
    """A model with a one-sequence context that returns the logits of every window position."""

    def __init__(self, path: Path, *, window: int, threads: int, kv_type: str = "f16") -> None:
        self.model = Model(path)
        try:
            self.ctx = Context(self.model, n_seq=1, ctx_per_seq=window, n_batch=window, threads=threads,
                               type_k=kv_type, type_v=kv_type)
        except Exception:
            self.model.close()
            raise
        self.batch = Batch(window)

    def tokenize(self, text: str) -> list[int]:
        return self.model.tokenize(text, add_special=self.model.add_bos, parse_special=False)

    def logits(self, tokens: list[int]) -> np.ndarray:
        self.ctx.seq_rm(0, 0, -1)
        self.batch.clear()
        for pos, token in enumerate(tokens):
            self.batch.add(token, pos, 0, True)
        if self.ctx.decode(self.batch) != 0:
            raise EngineError("llama_decode failed while scoring the eval text")
        return self.ctx.output_logits(len(tokens))

    def close(self) -> None:
        self.batch.close()
        self.ctx.close()
        self.model.close()


def log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))  # type: ignore[no-any-return]


def _scored(tokens: list[int], window_list: list[Window], sources: list[LogitSource],
            progress: Callable[[int, int], None] | None) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """For each window: the target token ids and each source's log-probabilities of the
    scored positions (rows predict the targets)."""
    for i, win in enumerate(window_list):
        chunk = tokens[win.start:win.end]
        rows = slice(win.first_scored - 1 - win.start, win.end - 1 - win.start)
        targets = np.asarray(tokens[win.first_scored:win.end])
        yield targets, [log_softmax(src.logits(chunk)[rows]) for src in sources]
        if progress:
            progress(i + 1, len(window_list))


def prepare_tokens(sources: list[LogitSource], text: str, max_tokens: int | None) -> list[int]:
    tokens = sources[0].tokenize(text)
    for other in sources[1:]:
        if other.model.n_vocab != sources[0].model.n_vocab or other.tokenize(text) != tokens:
            raise InvalidRequest(f"{other.model.path.name} and {sources[0].model.path.name} tokenize differently; "
                                 "drift needs models with the same vocabulary")
    return tokens[:max_tokens] if max_tokens else tokens


def perplexity(source: LogitSource, text: str, *, window: int, stride: int, max_tokens: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    tokens = prepare_tokens([source], text, max_tokens)
    plan = windows(len(tokens), window, stride)
    nll, count = 0.0, 0
    for targets, (logp,) in _scored(tokens, plan, [source], progress):
        nll -= float(logp[np.arange(len(targets)), targets].sum())
        count += len(targets)
    return {"tokens": len(tokens), "scored_tokens": count, "windows": len(plan), "window": window, "stride": stride,
            "mean_nll": nll / count, "perplexity": math.exp(nll / count)}


def drift(reference: LogitSource, others: list[LogitSource], text: str, *, window: int, stride: int,
          max_tokens: int | None = None, progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """For each of ``others``: KL(reference || other) per position (mean, p99, max), top-1
    agreement, and both perplexities, on the same tokens and windows. The reference is decoded
    once for all of them."""
    tokens = prepare_tokens([reference, *others], text, max_tokens)
    plan = windows(len(tokens), window, stride)
    nll = [0.0] * (len(others) + 1)
    kls: list[list[np.ndarray]] = [[] for _ in others]
    agree = [0] * len(others)
    count = 0
    for targets, (lp_ref, *lp_others) in _scored(tokens, plan, [reference, *others], progress):
        idx = np.arange(len(targets))
        p_ref = np.exp(lp_ref)
        top_ref = lp_ref.argmax(axis=1)
        nll[0] -= float(lp_ref[idx, targets].sum())
        for i, lp in enumerate(lp_others):
            nll[i + 1] -= float(lp[idx, targets].sum())
            kls[i].append(np.maximum((p_ref * (lp_ref - lp)).sum(axis=1), 0.0))
            agree[i] += int((top_ref == lp.argmax(axis=1)).sum())
        count += len(targets)
    ppl_ref = math.exp(nll[0] / count)
    results = []
    for i in range(len(others)):
        kl = np.concatenate(kls[i])
        ppl = math.exp(nll[i + 1] / count)
        results.append({"tokens": len(tokens), "scored_tokens": count, "windows": len(plan), "window": window,
                        "stride": stride, "perplexity_reference": ppl_ref, "perplexity": ppl,
                        "perplexity_ratio": ppl / ppl_ref, "kl_mean": float(kl.mean()),
                        "kl_p99": float(np.percentile(kl, 99)), "kl_max": float(kl.max()),
                        "top1_agreement": agree[i] / count})
    return results
