"""SIGTERM under load: at the drain deadline, or on a second SIGTERM, every running stream ends
with a terminal frame (OpenAI: a ``finish_reason: "length"`` chunk, an error frame saying the
server shut down, ``data: [DONE]``; Ollama: a final ``done`` object with ``done_reason``), and the
exit code says the drain was cut short."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import MODEL
from tests.helpers import ServerProcess
from tests.reliability.conftest import small_server

STORY = [{"role": "user", "content": "Tell me a long story about a dragon."}]
EXIT_CUT_SHORT = 3


class Reader(threading.Thread):
    """Reads one stream to its end in the background; ``started`` is set at the first data line."""

    def __init__(self, server: ServerProcess, path: str, body: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        self.server, self.path, self.body = server, path, body
        self.lines: list[str] = []
        self.started = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.stream("POST", f"{self.server.url}{self.path}", json=self.body, timeout=120) as resp:
                assert resp.status_code == 200, resp.read()
                for line in resp.iter_lines():
                    if line.strip():
                        self.lines.append(line)
                        self.started.set()
        except BaseException as exc:  # the test reports it
            self.error = exc
            self.started.set()


def _load(server: ServerProcess) -> list[Reader]:
    readers = [
        Reader(server, "/v1/chat/completions", {"model": MODEL, "messages": STORY, "max_tokens": 200,
                                                "ignore_eos": True, "stream": True}),
        Reader(server, "/api/chat", {"model": MODEL, "messages": STORY, "stream": True,
                                     "options": {"num_predict": 200}}),
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 120
    while _in_flight(server) < len(readers):  # both admitted (decoding or still reading their prompts)
        assert time.monotonic() < deadline and not any(r.error for r in readers), [r.error for r in readers]
        time.sleep(0.05)
    return readers


def _in_flight(server: ServerProcess) -> int:
    slots = httpx.get(f"{server.url}/slots", timeout=30).json().get(MODEL, {})
    return int(slots.get("running", 0) + slots.get("waiting", 0))


def _assert_terminal_frames(readers: list[Reader]) -> None:
    for reader in readers:
        reader.join(60)
        assert not reader.is_alive() and reader.error is None, reader.error
    openai, ollama = readers[0].lines, readers[1].lines
    assert openai[-1] == "data: [DONE]"
    error = json.loads(openai[-2].removeprefix("data: "))["error"]
    assert error["code"] == "server_shutting_down" and "shut" in error["message"]
    finishes = [c["choices"][0]["finish_reason"] for c in (json.loads(x[6:]) for x in openai[:-2]) if c.get("choices")]
    assert finishes[-1] == "length" and finishes.count("length") == 1
    last = json.loads(ollama[-1])
    assert last["done"] is True and last["done_reason"] == "length"
    assert all(not json.loads(x)["done"] for x in ollama[:-1])


@pytest.mark.parametrize("second_sigterm", [False, True], ids=["drain-deadline", "second-sigterm"])
def test_sigterm_under_load_ends_every_stream_with_a_terminal_frame(tmp_path: Path, second_sigterm: bool) -> None:
    server = small_server(tmp_path, "--drain-timeout", "600" if second_sigterm else "1")
    try:
        readers = _load(server)
        server.proc.send_signal(signal.SIGTERM)
        if second_sigterm:
            assert httpx.get(f"{server.url}/ready", timeout=30).status_code == 503  # draining
            server.proc.send_signal(signal.SIGTERM)
        _assert_terminal_frames(readers)
        assert server.proc.wait(timeout=60) == EXIT_CUT_SHORT
    finally:
        server.close()
