"""Schemathesis over the server's own OpenAPI document, both APIs: no 5xx, no crash, and every
status code, content type, header and body is the one the document declares.

About 10 cases per operation here (~240), at least 1,000 in CI (``CI=true``), any number with
``SLM_FUZZ_EXAMPLES=N``. Generated bodies that would run a generation get a small token budget
(4 tokens) so the suite stays bounded on a 2-core machine; everything else is as generated."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

from tests.helpers import ServerProcess
from tests.reliability.conftest import ci, still_serves

schemathesis = pytest.importorskip("schemathesis")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("SLM_FUZZ_EXAMPLES") or (80 if ci() else 10))  # per operation, half per mode
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance]
TOKENS = 4
SENT: list[str] = []  # one entry per request made
GENERATES = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages", "/api/generate",
                       "/api/chat"})


def _small(body: Any, *, openai: bool) -> None:
    """At most a few generated tokens for a body that would generate (the schema is unchanged)."""
    if not isinstance(body, dict):
        return
    if openai:
        for key in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
            value = body.get(key)
            if (key in ("max_tokens", "max_output_tokens") and value is None) or \
                    (isinstance(value, int) and 0 < value <= 64):
                body[key] = min(value or TOKENS, TOKENS)
        return
    options = body.get("options")
    if isinstance(options, dict):
        value = options.get("num_predict")
        if not isinstance(value, int) or not 0 <= value <= TOKENS:
            options["num_predict"] = TOKENS
    elif "options" not in body:
        body["options"] = {"num_predict": TOKENS}


def _fuzz(operation: Any, mode: Any, examples: int, url: str) -> list[str]:
    """Run ``examples`` generated cases; the failures (no shrinking: each costs requests)."""
    failures: list[str] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    def run(case: Any) -> None:
        if operation.path in GENERATES:
            _small(case.body, openai=operation.path.startswith("/v1/"))
        SENT.append(operation.label)
        try:
            case.call_and_validate(base_url=url, checks=CHECKS, timeout=120)
        except (Exception, FailureGroup) as exc:  # a check's failure (group), or the server went away
            if not failures:  # the first is enough: without shrinking the others are its copies
                failures.append(f"{operation.label} ({mode}): {str(exc).strip()[:800]}")

    try:
        run()
    except Unsatisfiable:  # nothing to make invalid (e.g. a GET without parameters)
        assert mode == GenerationMode.NEGATIVE
    return failures


def test_the_server_does_what_its_document_says(rserver: ServerProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{rserver.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # both APIs
    only = os.environ.get("SLM_FUZZ_ONLY")  # e.g. "POST /v1/chat" while debugging one operation
    operations = [op for op in operations if not only or only in op.label]
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz(operation, mode, max(1, EXAMPLES // 2), rserver.url)
    assert not failures, f"{len(failures)} failing operation(s) in {len(SENT)} requests:\n\n" + \
        "\n\n".join(failures[:20])
    print(f"schemathesis: {len(SENT)} requests over {len(operations)} operations")
    assert len(SENT) >= (1000 if ci() else 100) or only


def test_the_server_survived_the_fuzzing(rserver: ServerProcess) -> None:
    still_serves(rserver)
    assert httpx.get(f"{rserver.url}/openapi.json", timeout=30).status_code == 200
