"""`slm run` as a person uses it: in a terminal (Ctrl-C, /commands, a created profile) and
through a pipe."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.terminal import Terminal

MODEL = "smollm2-135m-instruct"
LONG = "Write a very long story about a ship, a storm and a lighthouse, with many chapters."


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "SLM_HOME": str(home), "TERM": "dumb", "COLUMNS": "200"}


def _slm(*args: str, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "slmkit", *args], env=_env(home), capture_output=True, text=True,
                          input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL, timeout=300)


@pytest.fixture(scope="module")
def pirate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the profile `pirate`: the embedded model with a SYSTEM and num_ctx 512."""
    home = tmp_path_factory.mktemp("run-home")
    modelfile = home / "Modelfile"
    modelfile.write_text(f'FROM {MODEL}\nSYSTEM """You are Captain Byte, a pirate."""\n'
                         "PARAMETER num_ctx 512\nPARAMETER temperature 0.3\n")
    done = _slm("create", "pirate", "-f", str(modelfile), home=home)
    assert done.returncode == 0, done.stderr
    return home


@pytest.fixture
def terminal(pirate: Path) -> Iterator[Terminal]:
    term = Terminal([sys.executable, "-m", "slmkit", "run", "pirate", "--threads", "2"], _env(pirate))
    yield term
    term.close()


def test_profile_commands_and_ctrl_c_in_a_terminal(terminal: Terminal) -> None:
    terminal.expect(">>> ")
    assert "You are Captain Byte, a pirate." in terminal.ask("/show system")  # the created profile's SYSTEM
    assert "512 tokens per slot" in terminal.ask("/show info")  # its num_ctx: the profile applied at load
    assert "temperature" in terminal.ask("/show parameters")
    assert "Set parameter 'temperature' to '0.2'" in terminal.ask("/set parameter temperature 0.2")
    assert "not a valid value for temperature" in terminal.ask("/set parameter temperature warm")
    assert "Set system message." in terminal.ask("/set system You answer briefly.")
    assert "You answer briefly." in terminal.ask("/show system").replace("/show system", "")

    terminal.ask("/set parameter num_predict 400")
    terminal.line(LONG)
    terminal.expect(LONG)  # the echo of the typed line
    terminal.expect(" ")  # the answer has started
    terminal.send("\x03")  # Ctrl-C mid-answer: that answer stops, the session goes on
    before = terminal.expect(">>> ", timeout=60)
    assert "Traceback" not in before and "crashed" not in before, before
    assert terminal.alive()

    terminal.ask("/set parameter num_predict 3")
    assert "[answer cut at the token limit" in terminal.ask(LONG)
    assert "Cleared session context" in terminal.ask("/clear")
    assert "Loading model 'smollm2-135m-instruct'" in terminal.ask(f"/load {MODEL}")
    assert "2048 tokens per slot" in terminal.ask("/show info")  # the plain model: no profile's num_ctx
    assert "/show parameters" in terminal.ask("/?")
    terminal.send("\x04")  # Ctrl-D at the prompt: leave
    assert terminal.wait() == 0
    assert "Traceback" not in terminal.output


def test_ctrl_c_at_the_prompt_and_twice_during_an_answer_exit(terminal: Terminal) -> None:
    terminal.expect(">>> ")
    terminal.line("/set parameter num_predict 400")
    terminal.line(LONG)
    terminal.expect(LONG)
    terminal.expect(" ")
    terminal.send("\x03")  # twice: leave (the second lands in the answer or at the prompt)
    time.sleep(0.3)  # two at once would be one signal
    terminal.send("\x03")
    assert terminal.wait() in (0, 130)
    assert "Traceback" not in terminal.output


def test_piped_stdin_prints_only_the_answer(pirate: Path) -> None:
    done = _slm("run", MODEL, "--max-tokens", "12", "--temperature", "0", "--threads", "2", home=pirate,
                stdin="Name a fruit.\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and ">>>" not in done.stdout and "chatting" not in done.stdout
    assert "Traceback" not in done.stderr and "loading" not in done.stderr


def test_one_argument_that_is_not_a_model(pirate: Path) -> None:
    done = _slm("run", "Why is the sky blue?", "--max-tokens", "8", "--threads", "2", home=pirate)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    word = _slm("run", "hello", home=pirate)
    assert word.returncode == 1 and len(word.stderr.strip().splitlines()) == 1, word.stderr
    assert f'slm run {MODEL} "hello"' in word.stderr
