"""The results file: one JSON object per line, appended and flushed line by line.

A line per input line, in the order lines finish (not input order)::

    {"line": 3, "id": "t-003", "data": {...}}                                  extracted
    {"line": 5, "id": null, "error": {"kind": "input", "message": "..."}}      bad input line
    {"line": 8, "id": "t-008", "error": {"kind": "output", "message": "..."}}  unusable model output
    {"line": 9, "id": "t-009", "error": {"kind": "request", "message": "..."}} server failed (retried)

Resuming reads it back: a torn last line (the process was killed while writing it) is cut off,
``request`` errors are dropped so those lines are tried again (the file is rewritten under a
temporary name, then renamed), and every other line number counts as finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

RETRIED_KINDS = frozenset({"request"})


class ResultsError(Exception):
    """The results file cannot be used, said in one line."""


@dataclass
class Resume:
    done: set[int] = field(default_factory=set)
    torn: bool = False  # a partial last line was cut off
    retried: int = 0  # request errors dropped to be tried again


def _read(path: Path) -> tuple[list[bytes], bool]:
    """The whole lines of ``path`` and whether a partial last line followed them."""
    data = path.read_bytes()
    cut = data.rfind(b"\n") + 1
    return data[:cut].splitlines(), cut < len(data)


def _parse(raw: bytes) -> dict[str, Any] | None:
    """A result line, or None when it is not one."""
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    line = record.get("line") if isinstance(record, dict) else None
    if not isinstance(line, int) or isinstance(line, bool):
        return None
    return dict(record)


def resume(path: Path) -> Resume:
    """Read what an earlier run finished, repairing the file as described above."""
    state = Resume()
    if not path.exists():
        return state
    try:
        lines, state.torn = _read(path)
    except OSError as exc:
        raise ResultsError(f"cannot read {path}: {exc.strerror}") from None
    kept: list[tuple[bytes, dict[str, Any]]] = []
    for number, raw in enumerate(lines, 1):
        record = _parse(raw) if raw.strip() else None
        if record is None and raw.strip():
            raise ResultsError(f"{path} line {number} is not a result line (is it another program's file?); "
                               "move it away or pass another OUT")
        elif record is not None and (record.get("error") or {}).get("kind") in RETRIED_KINDS:
            state.retried += 1
        elif record is not None:
            kept.append((raw, record))
    if state.torn or state.retried:
        _rewrite(path, [raw for raw, _ in kept])
    state.done = {record["line"] for _, record in kept}
    return state


def _rewrite(path: Path, lines: list[bytes]) -> None:
    """Replace ``path`` with ``lines``, never leaving a partial file under its name."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.writelines(raw + b"\n" for raw in lines)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ResultsWriter:
    """Appends one whole line per result and flushes it, so a kill leaves whole lines only."""

    def __init__(self, path: Path) -> None:
        try:
            self._file: IO[str] = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise ResultsError(f"cannot write {path}: {exc.strerror}") from None
        self.counts: dict[str, int] = {}

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()
        kind = record["error"]["kind"] if "error" in record else "data"
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def close(self) -> None:
        self._file.close()
