"""One in-process model for the Python API tests (the real embedded SmolLM2)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import slmkit


@pytest.fixture(scope="module")
def model() -> Iterator[slmkit.Model]:
    with slmkit.load(parallel=4, ctx_size=1024, threads=2) as loaded:
        yield loaded
