"""The pytest plugin, used the way a user would: a temporary project run by pytester in a
subprocess, with the plugin found through its pytest11 entry point (pytester is enabled by
``-p pytester`` in the project's pytest options)."""

from __future__ import annotations

import pytest

USER_TESTS = '''
import httpx
import openai
import pytest
from pydantic import BaseModel

from slmkit.testing import DETERMINISTIC, assert_json_schema, assert_mentions


class City(BaseModel):
    name: str
    country: str


def test_server_answers_the_openai_sdk(slm_server):
    client = openai.OpenAI(base_url=slm_server.base_url, api_key="none")
    reply = client.chat.completions.create(
        model="smollm2-135m-instruct", max_tokens=8, **DETERMINISTIC,
        messages=[{"role": "user", "content": "What is the capital of France? One word."}])
    assert_mentions(reply.choices[0].message.content, "Paris")


def test_client_fixture_uses_the_same_server(slm_server, slm_client):
    assert slm_client.get("/health").status_code == 200
    assert str(slm_client.base_url).rstrip("/") == slm_server.url


def test_in_process_model_gives_schema_output(slm_model):
    out = slm_model.chat("Name a city in Italy.", response_format=City, max_tokens=40, **DETERMINISTIC)
    city = assert_json_schema(out.text, City)
    assert city == out.parsed


@pytest.mark.slm(parallel=1, ctx_size=256)
def test_marker_configures_the_model(slm_model):
    assert slm_model.context_length == 256 and slm_model.info["slots"] == 1


def test_ini_options_apply(slm_model):
    assert slm_model.info["slots"] == 2


def test_a_failing_check_reads_well(slm_model):
    assert_mentions(slm_model.chat("Say hello.", max_tokens=5, **DETERMINISTIC).text, "xylophone")
'''

INI = """
[pytest]
slm_engine_options =
    parallel=2
    ctx_size=512
    threads=2
"""


def test_plugin_fixtures_in_a_user_project(pytester: pytest.Pytester) -> None:
    pytester.makeini(INI)
    pytester.makepyfile(test_app=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=5, failed=1)
    result.stdout.fnmatch_lines(["*does not mention 'xylophone'*"])


def test_plugin_reports_a_model_that_cannot_load(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_bad="def test_it(slm_model):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", "--slm-model", "no-such-model")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*slm_model could not load*no-such-model*"])
