"""``echo`` with ``logprobs`` on /v1/completions (the prompt's own logprobs, the first ``null``) and
``max_tokens: 0`` with echo, with the openai SDK against the real server: what evaluation
harnesses (lm-evaluation-harness's ``local-completions``) send for log-likelihood tasks."""

from __future__ import annotations

import math

import httpx
import openai
import pytest
from openai.types import CompletionChoice

from tests.conftest import MODEL
from tests.helpers import ServerProcess
from tests.openapi import validate

TEXT = "The capital of France is Paris. The capital of Italy is"


def _score(client: openai.OpenAI, prompt: str | list[int]) -> CompletionChoice:
    resp = client.completions.create(model=MODEL, prompt=prompt, echo=True, logprobs=1, max_tokens=0, temperature=0)
    assert resp.usage is not None and resp.usage.completion_tokens == 0
    return resp.choices[0]


def test_max_tokens_zero_scores_the_prompt(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=MODEL, prompt=TEXT, echo=True, logprobs=1, max_tokens=0, temperature=0)
    # the spec's schema has no null in token_logprobs, yet OpenAI's echo answered one first (the
    # brief of this feature, and what lm-eval skips): the rest of the answer is validated
    body = resp.model_dump(exclude_unset=True)
    body["choices"][0]["logprobs"] = None
    validate("CreateCompletionResponse", body)
    choice = resp.choices[0]
    assert choice.text == TEXT and choice.finish_reason == "length"
    lp = choice.logprobs
    assert lp is not None and lp.tokens and lp.token_logprobs and lp.top_logprobs and lp.text_offset
    n = resp.usage.prompt_tokens if resp.usage else 0
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == len(lp.text_offset) == n
    assert "".join(lp.tokens) == TEXT
    assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
    assert all(v is not None and -100 < v <= 0 for v in lp.token_logprobs[1:])
    # the most likely token, and the prompt's own token beside it when that one is not the top
    assert all(top and 1 <= len(top) <= 2 and tok in top
               for tok, top in zip(lp.tokens[1:], lp.top_logprobs[1:], strict=True))
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(n)]
    # " Paris" after "The capital of France is" is what the model expects: the top alternative
    paris = lp.tokens.index(" Paris")
    assert lp.top_logprobs[paris] == {" Paris": lp.token_logprobs[paris]}


def test_echo_logprobs_then_generated_tokens(client: openai.OpenAI) -> None:
    """With tokens to generate: the prompt's entries, then the answer's, which is the answer
    given without echo; the prompt's values are those of the scoring request."""
    scored = _score(client, TEXT)
    plain = client.completions.create(model=MODEL, prompt=TEXT, logprobs=1, max_tokens=4, temperature=0).choices[0]
    both = client.completions.create(model=MODEL, prompt=TEXT, echo=True, logprobs=1, max_tokens=4,
                                     temperature=0).choices[0]
    assert both.text == TEXT + plain.text
    assert scored.logprobs and plain.logprobs and both.logprobs and plain.logprobs.tokens and scored.logprobs.tokens
    k = len(scored.logprobs.tokens)
    assert both.logprobs.tokens == scored.logprobs.tokens + plain.logprobs.tokens
    assert both.logprobs.token_logprobs[:k] == scored.logprobs.token_logprobs  # type: ignore[index]
    assert both.logprobs.token_logprobs[k:] == pytest.approx(plain.logprobs.token_logprobs)  # type: ignore[index]
    assert both.logprobs.text_offset[k] == len(TEXT)  # type: ignore[index]


def test_continuation_logprob_matches_forced_generation(client: openai.OpenAI, server: ServerProcess) -> None:
    """log p(" Rome" | context) from echo equals the logprob the server reports when it
    generates that token (forced with a logit bias: logprobs come before any bias)."""
    r = httpx.post(f"{server.url}/tokenize", json={"model": MODEL, "content": TEXT + " Rome"}, timeout=60)
    ids: list[int] = r.json()["tokens"]
    scored = _score(client, ids).logprobs
    assert scored is not None and scored.token_logprobs
    forced = client.completions.create(model=MODEL, prompt=ids[:-1], max_tokens=1, logprobs=1, temperature=0,
                                       logit_bias={str(ids[-1]): 100}).choices[0].logprobs
    assert forced is not None and forced.token_logprobs
    assert scored.token_logprobs[-1] == pytest.approx(forced.token_logprobs[0], abs=2e-3)
    assert math.exp(scored.token_logprobs[-1]) > 0.1


def test_streamed_echo_logprobs_match_whole(client: openai.OpenAI) -> None:
    kwargs = {"model": MODEL, "prompt": TEXT, "echo": True, "logprobs": 1, "max_tokens": 3, "temperature": 0}
    whole = client.completions.create(**kwargs).choices[0]  # type: ignore[call-overload]
    chunks = list(client.completions.create(**kwargs, stream=True))  # type: ignore[call-overload]
    assert "".join(c.choices[0].text for c in chunks if c.choices) == whole.text
    parts = [c.choices[0].logprobs for c in chunks if c.choices and c.choices[0].logprobs]
    tokens = [t for lp in parts for t in lp.tokens or []]
    offsets = [o for lp in parts for o in lp.text_offset or []]
    assert whole.logprobs is not None
    assert tokens == whole.logprobs.tokens and offsets == whole.logprobs.text_offset


def test_batched_token_id_prompts(client: openai.OpenAI) -> None:
    """lm-eval sends many token-id prompts in one request: every choice is scored alone."""
    first = _score(client, "One, two, three, four").logprobs
    second = _score(client, "Red, green, blue").logprobs
    assert first is not None and second is not None
    resp = client.completions.create(model=MODEL, prompt=["One, two, three, four", "Red, green, blue"], echo=True,
                                     logprobs=1, max_tokens=0, temperature=0)
    by_index = {c.index: c.logprobs for c in resp.choices}
    assert by_index[0] is not None and by_index[1] is not None
    # read in one decode step or alone: the same values (up to the kernels' rounding)
    assert by_index[0].token_logprobs[1:] == pytest.approx(first.token_logprobs[1:], abs=1e-3)  # type: ignore[index]
    assert by_index[1].token_logprobs[1:] == pytest.approx(second.token_logprobs[1:], abs=1e-3)  # type: ignore[index]


def test_max_tokens_zero_needs_echo(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt=TEXT, max_tokens=0, logprobs=1)
    assert "echo" in str(info.value) and info.value.body["param"] == "max_tokens"  # type: ignore[index]
    echoed = client.completions.create(model=MODEL, prompt=TEXT, max_tokens=0, echo=True)
    assert echoed.choices[0].text == TEXT and echoed.choices[0].logprobs is None
