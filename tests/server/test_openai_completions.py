"""Text completions (legacy endpoint) with the openai SDK."""

from __future__ import annotations

import openai

from tests.conftest import MODEL
from tests.openapi import validate


def test_completion_validates(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    validate("CreateCompletionResponse", resp.model_dump(exclude_unset=True))
    assert resp.choices[0].text
    assert resp.usage.completion_tokens <= 8
    assert resp.choices[0].finish_reason in ("stop", "length")


def test_completion_stream_matches_non_stream(client: openai.OpenAI) -> None:
    kwargs = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 20, "temperature": 0}
    whole = client.completions.create(**kwargs)
    chunks = list(client.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens == 20


def test_completion_prompt_list_and_token_ids(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=MODEL, prompt=["Hello", "Goodbye"], max_tokens=4, temperature=0)
    assert sorted(c.index for c in resp.choices) == [0, 1]
    ids = client.completions.create(model=MODEL, prompt=[1, 2, 3, 4], max_tokens=3, temperature=0)
    assert ids.usage.prompt_tokens == 4


def test_echo_prepends_prompt(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=MODEL, prompt="One, two,", max_tokens=3, temperature=0, echo=True)
    assert resp.choices[0].text.startswith("One, two,")
