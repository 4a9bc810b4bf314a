"""``slmkit.serve``: the full server (OpenAI and Ollama APIs) in a background thread of this
process, for programs that embed it."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn
from pydantic import ValidationError

from slmkit.errors import InvalidRequest, ModelLoadError, ServiceUnavailable, SlmkitError
from slmkit.server.app import create_app
from slmkit.server.runner import SWITCH_INTERVAL_S
from slmkit.settings import Settings, load_settings

log = logging.getLogger("slmkit.server")


def serve(model: str | None = None, *, models: Sequence[str] = (), host: str = "127.0.0.1", port: int = 0,
          api_key: str | None = None, home: str | Path | None = None, log_level: str = "warning",
          timeout: float = 300.0, **engine_options: Any) -> Server:
    """Start a server and return once it answers (its default model loaded).

    ``model`` is the default model (the embedded SmolLM2 when omitted), ``models`` more names to
    serve; ``port=0`` picks a free port (read ``Server.port`` / ``Server.url``). ``engine_options``
    as for ``slmkit.load``. Stop it with ``Server.stop()`` or a ``with`` block. Raises
    ``ModelNotFound`` / ``ModelLoadError`` when the model cannot load, ``InvalidRequest`` for bad
    options, ``OSError`` when the address is taken.
    """
    names = [m for m in (model, *models) if m]
    overrides: dict[str, Any] = {f"engine__{k}": v for k, v in engine_options.items()}
    if names:
        overrides["server__models"] = names
    try:
        settings = load_settings(server__host=host, server__port=port, security__api_key=api_key,
                                 store__home=home, log_level=log_level, **overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidRequest(f"{'.'.join(map(str, error['loc']))}: {error['msg']}",
                             param=str(error["loc"][-1])) from None
    server = Server(settings)
    server.start(timeout=timeout)
    return server


class Server:
    """A running server: ``url`` (``http://host:port``), ``base_url`` (the OpenAI ``/v1`` root),
    ``stop()``. Requests being answered when it stops are given a few seconds to finish."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._app = create_app(settings)
        self._socket = _bind(settings.server.host, settings.server.port)
        self.host = settings.server.host
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(self._app, log_level=settings.log_level, timeout_graceful_shutdown=5,
                                ssl_certfile=settings.security.ssl_certfile,
                                ssl_keyfile=settings.security.ssl_keyfile)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="slm-serve", daemon=True)

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.security.ssl_certfile else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Where the OpenAI SDK points: ``OpenAI(base_url=server.base_url, api_key=...)``."""
        return f"{self.url}/v1"

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and self._server.started

    def start(self, timeout: float = 300.0) -> None:
        """Start serving and wait until the default model is loaded."""
        sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_S))
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                self._socket.close()
                error = self._app.state.startup_error
                if isinstance(error, SlmkitError):
                    raise error
                raise ModelLoadError(f"the server did not start: {error or 'see its log'}")
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceUnavailable(f"the server did not start within {timeout:.0f}s")
            time.sleep(0.05)

    def _run(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn exits when start-up fails; start() reports why
            self._server.run(sockets=[self._socket])

    def stop(self, timeout: float = 30.0) -> None:
        """Stop accepting requests, let running ones end (a few seconds at most), unload the models."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<slmkit.Server {self.url} ({'running' if self.running else 'stopped'})>"


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (``port`` 0: a free one), made before the thread starts
    so that the address is known and a taken port fails here."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock
