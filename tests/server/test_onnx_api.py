"""The ONNX Runtime GenAI engine behind the same server: the conformance tests of the llama.cpp
engine (OpenAI and Ollama routes, batching, seeds, n), collected again here against the
converted int8 model, plus the sampling parameters the engine honours and those it refuses."""

from __future__ import annotations

from typing import Any

import httpx
import ollama
import openai
import pytest

from tests.conftest import MODEL, ONNX_INT4
from tests.helpers import ServerProcess

# The conformance suites, collected again with `client`/`aclient`/`ollama_client` bound to the ONNX
# server below. What is left out is what the ONNX engine does not have: logprobs, grammars
# (response_format, Ollama `format`), typical_p, prefix reuse, embeddings, and the bitwise equality of
# a request decoded alone and in a batch (see below).
# Batch invariance is tested in test_onnx_batching.py instead of test_eight_concurrent_streams_no_cross_talk
# and test_seed_reproducible_beside_other_requests: onnxruntime's CPU kernels compute a batch of one
# row in another order than a batch of several, so "alone" and "batched" may differ at near-ties.
from tests.server.test_batching import test_more_requests_than_slots_all_finish  # noqa: F401
from tests.server.test_engine_features import (  # noqa: F401
    test_n_returns_distinct_choices,
    test_n_streaming_has_every_index,
)
from tests.server.test_ollama import (  # noqa: F401
    test_chat_not_streamed,
    test_chat_streamed_matches_unstreamed,
    test_generate_streamed_and_not,
    test_generate_system_and_raw,
    test_options_stop_and_num_predict,
    test_sdk_raises_response_error_for_unknown_model,
)
from tests.server.test_openai_chat import (  # noqa: F401
    test_async_chat,
    test_async_streaming,
    test_max_completion_tokens_is_honoured,
    test_max_tokens_gives_length,
    test_models_list_validates,
    test_stop_string_never_appears,
    test_streaming_chat_chunks_validate,
    test_sync_chat_answers_and_validates,
    test_system_and_multi_turn_messages,
    test_unknown_model_in_retrieve,
)
from tests.server.test_openai_completions import (  # noqa: F401
    test_completion_prompt_list_and_token_ids,
    test_completion_stream_matches_non_stream,
    test_completion_validates,
    test_echo_prepends_prompt,
)

pytestmark = pytest.mark.slow
HELLO = [{"role": "user", "content": "Name three fruits."}]


@pytest.fixture(scope="module")
def client(onnx_server: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=onnx_server.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def aclient(onnx_server: ServerProcess) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=onnx_server.base_url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def ollama_client(onnx_server: ServerProcess) -> ollama.Client:
    return ollama.Client(host=onnx_server.url, timeout=120)


def test_models_list_has_both_onnx_models(client: openai.OpenAI) -> None:
    assert {MODEL, ONNX_INT4} <= {m.id for m in client.models.list().data}


def test_engine_is_onnx_with_continuous_batching(onnx_server: ServerProcess, client: openai.OpenAI) -> None:
    client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2)  # loads the model
    slots = httpx.get(f"{onnx_server.url}/slots", timeout=10).json()[MODEL]
    assert len(slots["slots"]) == 8 and slots["decode_steps_total"] >= 1  # only the ONNX engine counts steps
    assert {"id", "busy", "cached_tokens", "generated", "batch_row"} <= set(slots["slots"][0])
    metrics = httpx.get(f"{onnx_server.url}/metrics", timeout=10).text
    assert f'slm_requests_running{{model="{MODEL}"}}' in metrics


@pytest.mark.parametrize(("extra", "param"), [
    ({"logprobs": True}, "logprobs"),
    ({"extra_body": {"typical_p": 0.5}}, "typical_p"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
])
def test_unsupported_parameters_are_refused_by_name(client: openai.OpenAI, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, **extra)
    assert param in str(info.value.body) and info.value.body["param"] == param


def test_ollama_format_is_refused_in_ollama_shape(onnx_server: ServerProcess) -> None:
    resp = httpx.post(f"{onnx_server.url}/api/chat", json={"model": MODEL, "messages": HELLO, "format": "json",
                                                          "stream": False}, timeout=30)
    assert resp.status_code == 400
    assert "does not support response_format" in resp.json()["error"]


def test_bad_logit_bias_token_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, logit_bias={"99999999": 5})
    assert info.value.body["param"] == "logit_bias"


def test_sampling_controls_are_honoured_not_refused(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=16, temperature=0.9, top_p=0.8, seed=11, presence_penalty=0.5,
        frequency_penalty=0.5, extra_body={"top_k": 20, "min_p": 0.1, "repeat_penalty": 1.2})
    assert resp.usage.completion_tokens > 0


def test_ignore_eos_generates_max_tokens(client: openai.OpenAI) -> None:
    """What benchmarks send: no end-of-generation token is sampled, so exactly max_tokens come."""
    short = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=200, temperature=0)
    long = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=200, temperature=0,
                                          extra_body={"ignore_eos": True})
    assert short.usage is not None and short.usage.completion_tokens < 200
    assert long.usage is not None and long.usage.completion_tokens == 200
    assert long.choices[0].finish_reason == "length"


def test_logit_bias_forces_a_token(onnx_server: ServerProcess, client: openai.OpenAI) -> None:
    pieces = httpx.post(f"{onnx_server.url}/tokenize", json={"model": MODEL, "content": " banana", "with_pieces": True,
                                                            "add_special": False}, timeout=10).json()["tokens"]
    token = pieces[0]
    plain = client.completions.create(model=MODEL, prompt="My favourite colour is", max_tokens=1, temperature=0)
    forced = client.completions.create(model=MODEL, prompt="My favourite colour is", max_tokens=1, temperature=0,
                                       logit_bias={str(token["id"]): 100})
    assert forced.choices[0].text == token["piece"] != plain.choices[0].text


def test_sampling_with_seed_reproduces(client: openai.OpenAI) -> None:
    kwargs: dict[str, Any] = {"model": MODEL, "messages": HELLO, "max_tokens": 12, "temperature": 0.9,
                              "top_p": 0.9, "seed": 7}
    first = client.chat.completions.create(**kwargs).choices[0].message.content
    assert first == client.chat.completions.create(**kwargs).choices[0].message.content
