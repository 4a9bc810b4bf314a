"""The command that installs an optional extra, as the person reading it should type it: in a
git checkout (an editable install, as `make run` / `make test` make) that is the checkout's own
.venv, not a release from PyPI."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def checkout_root() -> Path | None:
    """The source checkout slmkit runs from, if it runs from one."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "src" / "slmkit").is_dir():
        return root
    return None


def install_command(extra: str) -> str:
    root = checkout_root()
    if root is None:
        return f"pip install 'slmkit[{extra}]'"
    pip = ".venv/bin/pip" if (root / ".venv" / "bin" / "pip").exists() else "pip"
    return f"{pip} install -e '.[{extra}]' (in {root})"
