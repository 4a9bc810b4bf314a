"""Test helpers: a real `slm serve` process on a free loopback port (``slmkit.server.process``,
also behind the pytest plugin's ``slm_server`` fixture)."""

from __future__ import annotations

import ssl
from pathlib import Path

from slmkit.server.process import ServeProcess, free_port

__all__ = ["ServerProcess", "free_port"]


class ServerProcess(ServeProcess):
    """`python -m slmkit serve ARGS...` in a subprocess, stopped on close."""

    def __init__(self, *args: str, env: dict[str, str] | None = None, log: Path | None = None,
                 scheme: str = "http", verify: ssl.SSLContext | bool = True) -> None:
        super().__init__(args, env=env, log=log, scheme=scheme, verify=verify, timeout=120.0)
