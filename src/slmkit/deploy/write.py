"""Write a rendered tree: into a temporary sibling first, then renamed into place."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from slmkit.errors import InvalidRequest


def write_tree(files: dict[str, str], out: Path, *, force: bool = False) -> list[Path]:
    """Write ``files`` under ``out``; an existing ``out`` is replaced only with ``force``."""
    out = out.expanduser().resolve()
    if out.exists() and not force:
        raise InvalidRequest(f"{out} already exists; pass --force to overwrite it", param="out")
    if out.exists() and not out.is_dir():
        raise InvalidRequest(f"{out} exists and is not a directory", param="out")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for relative, text in sorted(files.items()):
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        staging.chmod(0o755)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            staging.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / relative for relative in sorted(files)]
