"""The audit log: one JSON line per request, rotated by size. No prompt or output text
unless the server runs with ``--log-content``."""

from __future__ import annotations

import json
import logging
import logging.handlers
import time
from pathlib import Path
from typing import Any


class AuditLog:
    def __init__(self, path: Path | None, *, max_bytes: int, backups: int) -> None:
        self._logger: logging.Logger | None = None
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
                                                       encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.Logger(f"slmkit.audit.{path}")  # not in logging's global tree
        logger.addHandler(handler)
        logger.propagate = False
        self._logger = logger

    @property
    def enabled(self) -> bool:
        return self._logger is not None

    def write(self, **record: Any) -> None:
        if self._logger is not None:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            self._logger.info(json.dumps({"time": stamp, **record}, ensure_ascii=False))

    def close(self) -> None:
        if self._logger is not None:
            for handler in self._logger.handlers:
                handler.close()
