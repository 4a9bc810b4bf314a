"""Run an example the way its README says: the README's own command lines, word for word."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands(readme: Path, program: str) -> list[list[str]]:
    """The ``python PROGRAM ...`` lines of the README's bash blocks, split as the shell would."""
    commands: list[list[str]] = []
    language: str | None = None  # of the open fenced block; None outside one
    for line in readme.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            language = None if language is not None else stripped[3:].strip()
        elif language == "bash" and stripped.startswith(f"python {program} "):
            commands.append(shlex.split(stripped))
    return commands


def scratch(folder: Path, *names: str) -> Path:
    """``folder`` holding links to the repository's ``names`` (so README paths resolve there)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(ROOT / name, target_is_directory=True)
    return folder


def run_example(argv: list[str], cwd: Path, base_url: str, timeout: float = 600,
                **env: str) -> subprocess.CompletedProcess[str]:
    """``argv`` (a README line: ``python`` is this interpreter) with ``OPENAI_BASE_URL`` set."""
    return subprocess.run(example_argv(argv), cwd=cwd, env=example_env(base_url, **env), capture_output=True,
                          text=True, timeout=timeout)


def example_argv(argv: list[str]) -> list[str]:
    assert argv[0] == "python", argv
    return [sys.executable, *argv[1:]]


def example_env(base_url: str, **env: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENAI_MODEL", "RAG_DB")}
    return {**clean, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "unused", "COLUMNS": "200", **env}


def one_line_error(done: subprocess.CompletedProcess[str], program: str, text: str) -> None:
    """The run failed with exit status 1 and exactly one stderr line naming ``text``."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{program}: error: "), lines[0]
    assert text in lines[0], lines[0]


README_URL = "http://127.0.0.1:8080"  # where the READMEs point: `slm serve`'s default


def readme_lines(example: str) -> list[str]:
    """Every line of the ```bash blocks of examples/EXAMPLE/README.md (comments stripped)."""
    text = (ROOT / "examples" / example / "README.md").read_text(encoding="utf-8")
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.DOTALL):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command:
                lines.append(command)
    return lines


def with_url(command: str, url: str) -> str:
    """The README's command pointed at the test's server."""
    assert README_URL in command, command
    return command.replace(README_URL, url)
