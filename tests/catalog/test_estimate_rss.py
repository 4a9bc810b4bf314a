"""The memory estimate against the RSS of a real server holding the embedded model."""

from __future__ import annotations

from pathlib import Path

import openai

from slmkit.catalog.estimate import estimate_file
from slmkit.store.embedded import EMBEDDED
from tests.conftest import MODEL
from tests.helpers import ServerProcess


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_estimate_is_within_15_percent_of_the_server_rss(server: ServerProcess, client: openai.OpenAI) -> None:
    # the session server: 8 slots of 1024 tokens (tests/conftest.py); one request touches the weights
    reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello " * 200}],
                                           max_tokens=8, temperature=0)
    assert reply.usage is not None and reply.usage.prompt_tokens > 200
    measured = _rss(server.proc.pid)
    est = estimate_file(EMBEDDED[MODEL].path(), ctx=1024, parallel=8)
    assert abs(est.total_bytes - measured) <= 0.15 * measured, (est.total_bytes, measured)
