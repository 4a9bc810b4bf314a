"""Engine depth through the API: prefix reuse, cancellation, admission, constrained output,
sampling controls, n, logprobs."""

from __future__ import annotations

import asyncio
import json
import math
import time

import httpx
import jsonschema
import openai
import pytest

from slmkit.engine.llamacpp.bindings import Model
from slmkit.store.resolve import resolve_model
from tests.conftest import MODEL
from tests.helpers import ServerProcess

STORY = [{"role": "user", "content": "Write a very long story about a dragon and a knight."}]


def _slots(server: ServerProcess) -> dict[str, object]:
    return httpx.get(f"{server.url}/slots", timeout=10).json()[MODEL]  # type: ignore[no-any-return]


def test_prefix_reuse_reported_in_cached_tokens(one_slot_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=one_slot_server.base_url, api_key="x", max_retries=0)
    system = {"role": "system", "content": "You are a helpful assistant. " * 20}
    first = client.chat.completions.create(model=MODEL, max_tokens=4, temperature=0,
                                           messages=[system, {"role": "user", "content": "Hello!"}])
    again = client.chat.completions.create(model=MODEL, max_tokens=4, temperature=0,
                                           messages=[system, {"role": "user", "content": "Hello!"}])
    assert again.usage.prompt_tokens == first.usage.prompt_tokens
    assert again.usage.prompt_tokens_details.cached_tokens == again.usage.prompt_tokens - 1
    other = client.chat.completions.create(model=MODEL, max_tokens=4, temperature=0,
                                           messages=[system, {"role": "user", "content": "Bye now."}])
    cached = other.usage.prompt_tokens_details.cached_tokens
    assert 100 < cached < other.usage.prompt_tokens  # the shared system prompt, not the new turn


def test_dropped_stream_frees_its_slot(tiny_server: ServerProcess) -> None:
    body = {"model": MODEL, "messages": STORY, "max_tokens": 1500, "temperature": 0, "stream": True}
    with httpx.Client(timeout=60) as http, http.stream("POST", f"{tiny_server.base_url}/chat/completions",
                                                       json=body) as resp:
        lines = 0
        for line in resp.iter_lines():
            lines += bool(line.startswith("data:"))
            if lines >= 4:
                break
    # the client is gone: the slot is released at the next step, long before 1500 tokens
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _slots(tiny_server)["running"]:
        time.sleep(0.05)
    state = _slots(tiny_server)
    assert state["running"] == 0
    slot = state["slots"][0]  # type: ignore[index]
    assert slot["generated"] < 100 and not slot["busy"]
    # and it is used again at once
    client = openai.OpenAI(base_url=tiny_server.base_url, api_key="x", max_retries=0)
    assert client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=3).usage.completion_tokens == 3


def test_dropped_non_streaming_request_frees_its_slot(tiny_server: ServerProcess) -> None:
    body = {"model": MODEL, "messages": STORY, "max_tokens": 1500, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{tiny_server.base_url}/chat/completions", json=body, timeout=1.5)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _slots(tiny_server)["running"]:
        time.sleep(0.05)
    assert _slots(tiny_server)["running"] == 0
    assert _slots(tiny_server)["slots"][0]["generated"] < 1000  # type: ignore[index]


async def test_full_queue_answers_429_while_admitted_requests_finish(tiny_server: ServerProcess) -> None:
    aclient = openai.AsyncOpenAI(base_url=tiny_server.base_url, api_key="x", max_retries=0)
    running = await aclient.chat.completions.create(model=MODEL, messages=STORY, max_tokens=60, temperature=0,
                                                    stream=True)
    first = await running.__anext__()  # the role frame: admitted and decoding
    assert first.choices[0].delta.role == "assistant"
    waiting = await aclient.chat.completions.create(model=MODEL, messages=STORY, max_tokens=20, temperature=0,
                                                    stream=True)  # headers back: it is queued
    async with httpx.AsyncClient(timeout=30) as http:
        refused = await http.post(f"{tiny_server.base_url}/chat/completions",
                                  json={"model": MODEL, "messages": STORY, "max_tokens": 5})
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["code"] == "server_overloaded"

    async def finish(stream: openai.AsyncStream) -> str | None:  # type: ignore[type-arg]
        reason = None
        async for chunk in stream:
            reason = chunk.choices[0].finish_reason if chunk.choices else reason
        return reason

    assert await asyncio.gather(finish(running), finish(waiting)) == ["length", "length"]


SCHEMAS = [
    {"type": "object", "properties": {"name": {"type": "string", "maxLength": 30}, "age": {"type": "integer"}},
     "required": ["name", "age"], "additionalProperties": False},
    {"type": "object", "properties": {"colors": {"type": "array", "items": {"type": "string", "maxLength": 20},
                                                 "minItems": 2, "maxItems": 3}},
     "required": ["colors"]},
    {"type": "object", "properties": {"answer": {"enum": ["yes", "no"]}, "confidence": {"type": "number"}},
     "required": ["answer", "confidence"]},
]
PROMPTS = ["Describe a person called Ann who is 31.", "List some colors.", "Is the sky blue?"]


@pytest.mark.parametrize(("schema", "prompt"), list(zip(SCHEMAS, PROMPTS, strict=True)))
def test_json_schema_output_validates(client: openai.OpenAI, schema: dict[str, object], prompt: str) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=120,
        response_format={"type": "json_schema", "json_schema": {"name": "out", "schema": schema, "strict": True}})
    data = json.loads(resp.choices[0].message.content)
    jsonschema.validate(data, schema)
    assert resp.choices[0].finish_reason == "stop"


def test_json_object_output_parses(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Reply with a JSON object with a cat's name and color."}],
        temperature=0, max_tokens=300, response_format={"type": "json_object"})
    assert resp.choices[0].finish_reason == "stop"  # the object closed; only end-of-generation was allowed
    assert isinstance(json.loads(resp.choices[0].message.content), dict)


async def test_seed_reproducible_beside_other_requests(aclient: openai.AsyncOpenAI) -> None:
    kwargs = {"model": MODEL, "messages": STORY, "temperature": 1.0, "top_p": 0.9, "seed": 42, "max_tokens": 40}
    alone = await aclient.chat.completions.create(**kwargs)
    others = [aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": f"Topic {i}"}],
                                              temperature=1.0, max_tokens=40) for i in range(3)]
    crowded, *_ = await asyncio.gather(aclient.chat.completions.create(**kwargs), *others)
    assert crowded.choices[0].message.content == alone.choices[0].message.content


def test_n_returns_distinct_choices(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=MODEL, messages=STORY, n=3, temperature=1.0, seed=3, max_tokens=16)
    assert [c.index for c in resp.choices] == [0, 1, 2]
    assert len({c.message.content for c in resp.choices}) > 1
    assert resp.usage.completion_tokens == 48
    single = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=1)
    assert resp.usage.prompt_tokens == single.usage.prompt_tokens


def test_n_streaming_has_every_index(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model=MODEL, messages=STORY, n=2, temperature=1.0, seed=5,
                                                 max_tokens=8, stream=True))
    finished = {c.choices[0].index for c in chunks if c.choices and c.choices[0].finish_reason}
    assert finished == {0, 1}


def test_logprobs_are_sane(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(model=MODEL, messages=STORY, temperature=0, max_tokens=12,
                                          logprobs=True, top_logprobs=3)
    content = resp.choices[0].logprobs.content
    ended = resp.choices[0].finish_reason == "stop"  # the end-of-generation token counts but is not shown
    assert len(content) == resp.usage.completion_tokens - ended
    assert "".join(t.token for t in content) == resp.choices[0].message.content
    for item in content:
        assert item.logprob <= 0
        tops = [t.logprob for t in item.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert item.token == item.top_logprobs[0].token  # greedy picks the most likely token
        assert math.isclose(item.logprob, tops[0], abs_tol=1e-4)
        assert sum(math.exp(t) for t in tops) <= 1.0001
        assert bytes(item.bytes).decode("utf-8", errors="replace") == item.token


def test_completion_logprobs(client: openai.OpenAI) -> None:
    resp = client.completions.create(model=MODEL, prompt="One, two, three,", max_tokens=5, temperature=0,
                                     logprobs=2)
    lp = resp.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert all(v <= 0 for v in lp.token_logprobs)
    assert lp.text_offset == sorted(lp.text_offset)


def test_sampling_controls_accepted(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=STORY, max_tokens=16, temperature=0.9, top_p=0.8, seed=11, presence_penalty=0.5,
        frequency_penalty=0.5, extra_body={"top_k": 20, "min_p": 0.1, "typical_p": 0.9, "repeat_penalty": 1.2})
    assert resp.usage.completion_tokens > 0


def test_logit_bias_bans_a_token(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=1, temperature=0, logprobs=True)
    first = plain.choices[0].logprobs.content[0].token
    vocab = Model(resolve_model(MODEL).path, vocab_only=True)
    token_id = vocab.tokenize(first, add_special=False, parse_special=False)[0]
    vocab.close()
    banned = client.chat.completions.create(model=MODEL, messages=STORY, max_tokens=1, temperature=0,
                                            logprobs=True, logit_bias={str(token_id): -100})
    assert banned.choices[0].logprobs.content[0].token != first


BAD = [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "bogus"}}}},
     "response_format.json_schema.schema"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"n": 99}, "n"),
    ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ({"logit_bias": {"99999999": 5}}, "logit_bias"),
]


@pytest.mark.parametrize(("extra", "param"), BAD)
def test_bad_engine_parameters_are_400(server: ServerProcess, extra: dict[str, object], param: str) -> None:
    resp = httpx.post(f"{server.base_url}/chat/completions",
                      json={"model": MODEL, "messages": STORY, "max_tokens": 4, **extra}, timeout=30)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_truncate_policy_drops_oldest_turns(tmp_path: object) -> None:
    proc = ServerProcess("--parallel", "1", "--ctx-size", "256", "--context-overflow", "truncate")
    try:
        client = openai.OpenAI(base_url=proc.base_url, api_key="x", max_retries=0)
        history = [{"role": "system", "content": "Be brief."}]
        for i in range(12):
            history += [{"role": "user", "content": f"Tell me fact number {i} about the ocean, please."},
                        {"role": "assistant", "content": "The ocean is deep and covers most of the planet."}]
        history.append({"role": "user", "content": "Thanks!"})
        resp = client.chat.completions.create(model=MODEL, messages=history, max_tokens=16)
        assert 0 < resp.usage.prompt_tokens <= 256 - 16
    finally:
        proc.close()


def test_ignore_eos_generates_max_tokens(client: openai.OpenAI) -> None:
    """vLLM's and llama-server's ``ignore_eos``: no end-of-generation token is sampled."""
    messages = [{"role": "user", "content": "Say hi."}]
    short = client.chat.completions.create(model="smollm2-135m-instruct", messages=messages,  # type: ignore[arg-type]
                                           max_tokens=200, temperature=0)
    assert short.choices[0].finish_reason == "stop" and short.usage and short.usage.completion_tokens < 200
    long = client.chat.completions.create(model="smollm2-135m-instruct", messages=messages,  # type: ignore[arg-type]
                                          max_tokens=200, temperature=0, extra_body={"ignore_eos": True})
    assert long.choices[0].finish_reason == "length" and long.usage and long.usage.completion_tokens == 200
