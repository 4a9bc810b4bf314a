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

from slmkit.engine.admission import interrupt_streams
from slmkit.server.app import create_app
from slmkit.server.guard import GuardState
from slmkit.settings import Settings

log = logging.getLogger("slmkit.server")
# The scheduler thread needs the GIL back after every llama_decode; Python's default 5 ms
# switch interval would make it wait behind the event loop that long on each step.
SWITCH_INTERVAL_S = 0.0005
FINAL_FRAMES_S = 5.0  # how long streams ended at the drain deadline get to send their last frames
EXIT_CUT_SHORT = 3  # the exit code when running requests had to be ended before they finished


class DrainingServer(uvicorn.Server):
    """First SIGTERM: refuse new requests (503, /ready 503) and let running ones finish up to the
    drain timeout. At the deadline, or on a second SIGTERM, every stream still running is ended
    with a final chunk saying the server shut down (``engine.admission.interrupt_streams``), never
    cut mid-frame. ``cut_short`` tells whether that happened (the exit code: 0 or EXIT_CUT_SHORT)."""

    def __init__(self, config: uvicorn.Config, guard: GuardState, drain_timeout: float) -> None:
        super().__init__(config)
        self.guard = guard
        self.drain_timeout = drain_timeout
        self.cut_short = False
        self._signals = 0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)
            return
        self._signals += 1
        if self._signals == 2:
            log.warning("second SIGTERM: ending %d running request(s) now", self.guard.active)
            self._end_streams("the server shut down (second SIGTERM) before the generation finished")
            return
        if self._signals > 2:
            self.force_exit = self.should_exit = True
            return
        self.guard.draining = True
        log.warning("SIGTERM: draining %d running request(s), at most %.0fs", self.guard.active, self.drain_timeout)
        threading.Thread(target=self._exit_when_drained, name="slm-drain", daemon=True).start()

    def _end_streams(self, reason: str) -> None:
        self.cut_short = True
        interrupt_streams(reason)

    def _exit_when_drained(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        while self.guard.active > 0 and time.monotonic() < deadline and not self.cut_short:
            time.sleep(0.05)
        if self.guard.active > 0 and not self.cut_short:
            log.warning("drain timeout: ending %d running request(s)", self.guard.active)
            self._end_streams("the server shut down (drain timeout) before the generation finished")
        grace = time.monotonic() + FINAL_FRAMES_S  # the ended streams send their last frames
        while self.guard.active > 0 and time.monotonic() < grace:
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
    server = DrainingServer(config, guard, settings.server.drain_timeout)
    server.run()
    if server.cut_short:
        log.warning("exiting with %d: the drain was cut short", EXIT_CUT_SHORT)
        raise SystemExit(EXIT_CUT_SHORT)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
