"""Speculative decoding over HTTP: the per-request opt-out on both APIs, the /metrics counters
and the server log's line per response, which agree exactly."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import MODEL
from tests.engine.test_speculative import COPY
from tests.helpers import ServerProcess
from tests.server.test_metrics import _get, _samples

MESSAGES = [{"role": "user", "content": COPY}]


@pytest.fixture(scope="module")
def spec_server() -> Iterator[ServerProcess]:
    proc = ServerProcess("--parallel", "2", "--ctx-size", "1024", "--threads", "2", "--speculative", "ngram",
                         env={"SLM_LOG_LEVEL": "info"})  # the per-response lines are at info level
    yield proc
    proc.close()


def counters(server: ServerProcess) -> tuple[float, float]:
    s = _samples(server)
    return (_get(s, "slm_spec_draft_tokens_total", model=MODEL), _get(s, "slm_spec_accepted_tokens_total", model=MODEL))


def logged(server: ServerProcess, request_id: str) -> tuple[int, int] | None:
    """The (drafted, accepted) of the response's log line; None when it has none."""
    text = server.log.read_text(errors="replace")
    match = re.search(rf"request {request_id}/0: speculative decoding drafted (\d+) tokens, accepted (\d+)", text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def test_metrics_and_log_count_the_drafts(spec_server: ServerProcess) -> None:
    client = openai.OpenAI(base_url=spec_server.base_url, api_key="x", max_retries=0, timeout=120)
    before = counters(spec_server)
    on = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=32, temperature=0)  # type: ignore[arg-type]
    after = counters(spec_server)
    drafted, accepted = logged(spec_server, on.id.removeprefix("chatcmpl-")) or (-1, -1)
    assert (after[0] - before[0], after[1] - before[1]) == (drafted, accepted)
    assert 0 < accepted <= drafted

    off = client.chat.completions.create(model=MODEL, messages=MESSAGES, max_tokens=32, temperature=0,  # type: ignore[arg-type]
                                         extra_body={"speculative": False})
    assert counters(spec_server) == after and logged(spec_server, off.id.removeprefix("chatcmpl-")) is None
    assert off.choices[0].message.content == on.choices[0].message.content


def test_ollama_option_turns_it_off(spec_server: ServerProcess) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "stream": False, "options": {"temperature": 0, "num_predict": 12}}
    before = counters(spec_server)
    off = httpx.post(f"{spec_server.url}/api/chat", json={**body, "options": {**body["options"], "speculative": False}},
                     timeout=120)
    assert off.status_code == 200 and counters(spec_server) == before
    on = httpx.post(f"{spec_server.url}/api/chat", json=body, timeout=120)
    assert on.json()["message"]["content"] == off.json()["message"]["content"]
    assert counters(spec_server)[1] > before[1]
    bad = httpx.post(f"{spec_server.url}/api/chat", json={**body, "options": {"speculative": "maybe"}}, timeout=30)
    assert bad.status_code == 400 and "speculative" in bad.json()["error"]


def test_a_bad_flag_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "slmkit", "serve", "--speculative", "maybe"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "--speculative" in done.stderr and "ngram" in done.stderr
