"""What `slm serve` checks and says before the server starts: the port is free, and a banner
with the models, slots x context, the URLs and whether requests need a key."""

from __future__ import annotations

import errno
import socket

from slmkit.errors import SlmkitError
from slmkit.settings import Settings


def check_port(host: str, port: int) -> None:
    """A port another process holds is one line now, not a traceback after the model loaded."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SlmkitError(f"port {port} on {host} is in use (another `slm serve`?); "
                                  "stop it, or choose another port with --port") from None
            raise SlmkitError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def hint_busy(settings: Settings) -> None:
    from slmkit.cli.common import busy_hint

    busy_hint(settings.engine.threads)


def keys_required(settings: Settings) -> bool:
    from slmkit.server.auth import KeyStore

    return settings.security.api_key is not None or KeyStore(settings.keys_db).has_keys()


def banner(settings: Settings) -> list[str]:
    server, engine = settings.server, settings.engine
    scheme = "https" if settings.security.ssl_certfile else "http"
    host = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}.get(server.host, server.host)
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    base = f"{scheme}://{host}:{server.port}"
    first, *rest = server.models
    models = f"{first} (loads now)" + (f", {', '.join(rest)} (on first use)" if rest else "")
    lines = [f"serving {models}; {engine.parallel} slots x {engine.ctx_size} tokens, {engine.n_threads()} threads",
             f"  API      {base}/v1 (OpenAI), {base}/api (Ollama)",
             f"  chat     {base}/",
             f"  metrics  {base}/metrics" + ("" if settings.security.metrics_public else " (needs a key when keys "
                                                                                       "are on)")]
    if settings.security.api_key is not None:
        lines.append("  keys     required: the static key (--api-key / SLM_API_KEY)")
    elif keys_required(settings):
        lines.append(f"  keys     required: keys exist in {settings.keys_db} (`slm keys list`); every server "
                     "sharing this SLM_HOME asks for one")
    else:
        lines.append("  keys     not required (the first `slm keys create` turns them on)")
    return lines
