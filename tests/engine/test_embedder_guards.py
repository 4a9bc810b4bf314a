"""The embedder checks token ids itself and stops a big batch whose caller went away."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from slmkit.engine.llamacpp.embedding import LlamaCppEmbedder
from slmkit.errors import InvalidRequest, ServiceUnavailable
from slmkit.settings import EngineSettings
from slmkit.store.embedded import EMBEDDED


@pytest.fixture(scope="module")
def embedder() -> Iterator[LlamaCppEmbedder]:
    model = LlamaCppEmbedder("minilm", EMBEDDED["all-minilm-l6-v2"].path(), EngineSettings(threads=2))
    yield model
    model.close()


@pytest.mark.parametrize("inputs", [[[]], [[101, -1]], [[101, 10**7]]])
def test_bad_token_ids_are_400(embedder: LlamaCppEmbedder, inputs: list[list[int]]) -> None:
    with pytest.raises(InvalidRequest) as info:
        asyncio.run(embedder.embed(inputs))
    assert info.value.param == "input"


def test_a_cancelled_batch_stops_at_the_next_group(embedder: LlamaCppEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    groups: list[int] = []
    started = threading.Event()
    embed_group = embedder._embed_group

    def counted(group: list[list[int]]) -> list[list[float]]:
        groups.append(len(group))
        started.set()
        return embed_group(group)

    monkeypatch.setattr(embedder, "_embed_group", counted)
    inputs = [[101, 2000 + i, 102] for i in range(2048)]  # 64 groups of 32

    async def cancel_midway() -> None:
        task = asyncio.ensure_future(embedder.embed(inputs))
        await asyncio.to_thread(started.wait, 60)
        task.cancel()  # what the route does when the client disconnects
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_midway())
    with embedder._lock:  # the worker thread has let go
        assert 0 < len(groups) < 64


def test_a_closed_model_is_a_retryable_503_not_a_crash() -> None:
    model = LlamaCppEmbedder("minilm", EMBEDDED["all-minilm-l6-v2"].path(), EngineSettings(threads=1))
    model.close()
    with pytest.raises(ServiceUnavailable):
        model.tokenize("hello")
