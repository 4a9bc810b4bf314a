"""The memory estimate against the RSS of a real server holding the embedded model."""

from __future__ import annotations

from pathlib import Path

import openai

from slmkit.catalog.estimate import estimate_file
from slmkit.store.embedded import EMBEDDED
from tests.conftest import MODEL
from tests.helpers import ServerProcess

PARALLEL, CTX = 8, 1024  # the session server's settings (tests/conftest.py)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_estimate_is_within_15_percent_of_the_server_rss(server: ServerProcess, client: openai.OpenAI) -> None:
    # a prompt longer than one 512-token chunk: a full prefill step, every weight page touched. (Measured
    # after four such prompts at once the RSS moves by 1%, so the other tests' traffic does not matter.)
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "the cat sat on the mat. " * 75}], max_tokens=8,
        temperature=0)
    assert reply.usage is not None and reply.usage.prompt_tokens > 512
    measured = _rss(server.proc.pid)
    est = estimate_file(EMBEDDED[MODEL].path(), ctx=CTX, parallel=PARALLEL)
    print(f"estimate {est.total_bytes / 2**20:.1f} MiB, measured RSS {measured / 2**20:.1f} MiB")
    assert abs(est.total_bytes - measured) <= 0.15 * measured, (est.total_bytes, measured)
