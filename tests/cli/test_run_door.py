"""``slm run`` as a door of the matrix (see tests/server/inproc/test_door_matrix.py): the same
behaviours, in process through the CLI (piped stdin, so only the answer is printed), on the
fake engine. Tool calls are not a ``slm run`` feature (nor an ``ollama run`` one)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from slmkit.cli.main import cli
from tests.inprocess import MODEL, Engines, engines, home, make_key, make_profile, settings
from tests.server.inproc.test_door_matrix import SCHEMA, TUNED

__all__ = ["engines", "home"]


def run(home: Path, model: str, *options: str, prompt: str = "hi") -> tuple[int, str, str]:
    """``slm run MODEL PROMPT``: one answer, on stdout alone."""
    result = CliRunner().invoke(cli, ["run", model, prompt, *options, "--ctx-size", "2048"],
                                env={"SLM_HOME": str(home)}, catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_profile_defaults(home: Path, engines: Engines) -> None:
    make_profile(home, "tuned", TUNED)
    code, out, err = run(home, "tuned")
    assert code == 0, err
    request = engines["tuned"].requests[-1]
    assert request.sampling.temperature == pytest.approx(0.13) and request.sampling.top_k == 7
    assert request.max_tokens == 5 and out.strip() == "Hello"
    assert "You are Tuned." in engines["tuned"].detokenize(request.prompt)
    code, out, err = run(home, "tuned", "--temperature", "0.5", "--max-tokens", "3")
    assert code == 0 and engines["tuned"].requests[-1].sampling.temperature == pytest.approx(0.5)
    assert engines["tuned"].requests[-1].max_tokens == 3


def test_scope(home: Path, engines: Engines) -> None:
    make_profile(home, "tuned", TUNED)
    key = make_key(settings(home), models=["tuned"])
    code, out, err = run(home, MODEL, "--api-key", key)
    assert code != 0 and out == ""
    assert err.strip().splitlines() == [f"error: this API key may not use the model '{MODEL}'"]
    code, out, err = run(home, "tuned", "--api-key", key)
    assert code == 0 and out.strip() == "Hello"


def test_caps(home: Path, engines: Engines) -> None:
    code, _out, err = run(home, MODEL, "--max-tokens", str(10**6))
    assert code != 0 and len(err.strip().splitlines()) == 1 and "max_tokens" in err
    assert not engines[MODEL].requests


def test_unknown_model_is_one_line(home: Path, engines: Engines) -> None:
    code, out, err = run(home, "no-such-model")
    assert code != 0 and out == "" and len(err.strip().splitlines()) == 1 and "no-such-model" in err


def test_json_schema(home: Path, engines: Engines) -> None:
    engines.reply = '{"city": "Paris"}'
    code, out, err = run(home, MODEL, "--format", json.dumps(SCHEMA))
    assert code == 0, err
    assert json.loads(out) == {"city": "Paris"}
    assert "city" in (engines[MODEL].requests[-1].sampling.grammar or "")


def test_stop_strings(home: Path, engines: Engines) -> None:
    engines.reply = "one two STOP three"
    code, out, err = run(home, MODEL, "--stop", "STOP")
    assert code == 0, err
    assert out == "one two \n"
