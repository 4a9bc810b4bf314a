"""The commands an example's README shows, so the tests run exactly those."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README_URL = "http://127.0.0.1:8080"  # where the READMEs point: `slm serve`'s default


def readme_commands(example: str) -> list[str]:
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
