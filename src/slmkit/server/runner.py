"""Run the app under uvicorn with a graceful drain on SIGTERM."""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys
import threading
import time
from types import FrameType

import uvicorn

from slmkit.server.app import create_app
from slmkit.server.guard import GuardState
from slmkit.settings import Settings

log = logging.getLogger("slmkit.server")
# The scheduler thread needs the GIL back after every llama_decode; Python's default 5 ms
# switch interval would make it wait behind the event loop that long on each step.
SWITCH_INTERVAL_S = 0.0005


class DrainingServer(uvicorn.Server):
    """First SIGTERM: refuse new requests (503, /ready 503), let running ones finish up to
    the drain timeout, then exit 0. A second SIGTERM exits at once."""

    def __init__(self, config: uvicorn.Config, guard: GuardState, drain_timeout: float) -> None:
        super().__init__(config)
        self.guard = guard
        self.drain_timeout = drain_timeout

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        if self.guard.draining:
            log.warning("second SIGTERM: exiting now")
            self.force_exit = self.should_exit = True
            return
        self.guard.draining = True
        log.warning("SIGTERM: draining %d running request(s), at most %.0fs", self.guard.active, self.drain_timeout)
        threading.Thread(target=self._exit_when_drained, name="slm-drain", daemon=True).start()

    def _exit_when_drained(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        while self.guard.active > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.should_exit = True


def serve(settings: Settings) -> None:
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    security = settings.security
    app = create_app(settings)
    guard: GuardState = app.state.guard
    if not _is_loopback(settings.server.host) and not guard.auth_required():
        log.warning("binding %s with no API key: anyone who can reach this address can use the models "
                    "(create one with `slm keys create` or set SLM_API_KEY)", settings.server.host)
    config = uvicorn.Config(app, host=settings.server.host, port=settings.server.port,
                            log_level=settings.log_level, timeout_graceful_shutdown=5,
                            ssl_certfile=security.ssl_certfile, ssl_keyfile=security.ssl_keyfile)
    DrainingServer(config, guard, settings.server.drain_timeout).run()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
