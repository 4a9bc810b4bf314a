"""The browser guard: what a web page the user visits may not do to a local server.

One ASGI middleware, inside CORS and outside the key guard. In order:

* request headers over ``server.max_header_bytes`` (names and values together): 431;
* a ``Host`` that is not an IP address, ``localhost`` (or ``*.localhost``) or a name in
  ``security.allowed_hosts`` (``--allowed-host``) is refused with 403: a DNS-rebinding page
  reaches the server under its own name. With no allowed hosts configured the check applies
  when the server is bound to loopback and is off when it is bound beyond it (as Ollama does);
  ``*`` allows every name;
* an ``Origin`` that is neither the server's own nor one CORS allows (``--cors-origin``): 403.
  A page elsewhere can send a "simple request" without a preflight; it always says where from;
* a body that is not JSON: 415. Only ``application/json`` (or ``application/*+json``) is read
  (and ``application/octet-stream`` by the blob upload, ``/api/blobs/``);
  a body without a content type only from a non-browser client (no ``Origin``), so neither a
  form post nor a ``text/plain`` fetch is ever a request.

Every response gets ``Content-Security-Policy`` (this origin only), ``X-Content-Type-Options:
nosniff``, ``X-Frame-Options: DENY`` and ``Referrer-Policy: no-referrer``.
"""

from __future__ import annotations

import ipaddress

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slmkit.errors import Forbidden, HeadersTooLarge, SlmkitError, UnsupportedMediaType
from slmkit.settings import Settings

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
JSON_TYPES = frozenset({"application/json"})
BLOB_PATH = "/api/blobs/"


class BrowserGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.max_header_bytes = settings.server.max_header_bytes
        self.cors = {o.rstrip("/").lower() for o in settings.security.cors_origins}
        hosts = [h.lower() for h in settings.security.allowed_hosts]
        self.any_host = "*" in hosts or (not hosts and not is_loopback(settings.server.host))
        self.hosts = frozenset({*hosts, settings.server.host.lower()})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secured = _secured(send)
        try:
            self.check(scope)
        except SlmkitError as exc:
            await error_response(scope, exc)(scope, receive, secured)
            return
        if scope["method"] in BODY_METHODS and not any(k.lower() == b"content-type" for k, _ in scope["headers"]):
            # a body without a type from a script (check() refused browsers): read it as JSON
            scope = {**scope, "headers": [*scope["headers"], (b"content-type", b"application/json")]}
        await self.app(scope, receive, secured)

    def check(self, scope: Scope) -> None:
        headers: dict[bytes, bytes] = {}
        size = 0
        for key, value in scope.get("headers", ()):
            size += len(key) + len(value)
            headers.setdefault(bytes(key).lower(), bytes(value))
        if size > self.max_header_bytes:
            raise HeadersTooLarge(f"request headers over the {self.max_header_bytes}-byte limit")
        host = headers.get(b"host", b"").decode("latin-1")
        if host and not self.host_allowed(host):
            raise Forbidden(f"the Host '{host_name(host)}' is not served here; start the server with "
                            f"--allowed-host {host_name(host)} to allow it", code="host_not_allowed")
        origin = headers.get(b"origin")
        if origin is not None and not self.origin_allowed(origin.decode("latin-1"), scope, host):
            raise Forbidden("cross-origin requests are refused unless the server allows the origin "
                            "(--cors-origin)", code="origin_not_allowed")
        if scope["method"] in BODY_METHODS:
            _check_content_type(headers, scope["path"])

    def host_allowed(self, host: str) -> bool:
        if self.any_host:
            return True
        name = host_name(host)
        if name == "localhost" or name.endswith(".localhost") or name in self.hosts:
            return True
        try:
            ipaddress.ip_address(name)  # no DNS name, no rebinding
        except ValueError:
            return False
        return True

    def origin_allowed(self, origin: str, scope: Scope, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.cors or "*" in self.cors:
            return True
        return bool(host) and origin == f"{scope.get('scheme', 'http')}://{host.lower()}"


def _check_content_type(headers: dict[bytes, bytes], path: str) -> None:
    raw = headers.get(b"content-type")
    if raw is None:
        has_body = headers.get(b"content-length", b"0").strip() not in (b"", b"0") or b"transfer-encoding" in headers
        if has_body and b"origin" in headers:
            raise UnsupportedMediaType("a request body must be JSON: send Content-Type: application/json")
        return
    media = raw.decode("latin-1").split(";", 1)[0].strip().lower()
    if media == "application/octet-stream" and path.startswith(BLOB_PATH):
        return  # a model file upload (not a type a page may send without a preflight)
    if media not in JSON_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(f"Content-Type '{media}' is not accepted: request bodies are JSON "
                                   "(send Content-Type: application/json)")


def host_name(host: str) -> str:
    """The name part of a Host header: ``[::1]:8080`` -> ``::1``, ``Example.COM:80`` -> ``example.com``."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secured(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            present = {bytes(k).lower() for k, _ in message.get("headers", [])}
            extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


def error_response(scope: Scope, exc: SlmkitError) -> JSONResponse:
    """The error in the shape of the API the path belongs to (Ollama's for ``/api/``)."""
    from slmkit.server.errors import error_body

    return JSONResponse(error_body(scope["path"], exc), status_code=exc.status, headers=exc.headers())
