"""The guard: one ASGI middleware in front of every route of both APIs.

In order: probes pass; a draining server answers 503; the body is read up to its cap (413);
the caller is authenticated (401); the route's declared policy is enforced (403, see
``server.policy``); the caller is rate-limited (429); the request runs with a
``RequestContext`` the service fills in; the audit line is written at the end. Anything
unexpected becomes a 500 ``internal_error`` in the API's own shape, its traceback logged.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slmkit.errors import (
    AdminRequired,
    Forbidden,
    InternalError,
    ModelNotFound,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    SlmkitError,
    Unauthorized,
)
from slmkit.server.audit import AuditLog
from slmkit.server.auth import KeyStore, check_static, credential
from slmkit.server.context import ANONYMOUS, Principal, RequestContext, current_request
from slmkit.server.errors import error_body, error_status
from slmkit.server.limits import RateLimiter
from slmkit.server.metrics import Metrics
from slmkit.server.policy import Policy, match
from slmkit.server.registry import ModelRegistry
from slmkit.settings import Settings

log = logging.getLogger("slmkit.server")

PROBES = frozenset({"/health", "/ready"})
KEYS_CACHE_S = 1.0


@dataclass
class GuardState:
    """What the guard and the probes share: settings, keys, limits, drain state."""

    settings: Settings
    metrics: Metrics
    keys: KeyStore
    limiter: RateLimiter
    audit: AuditLog
    registry: ModelRegistry
    routes: list[Any] = field(default_factory=list)  # the app's routes, for their policies
    draining: bool = False
    active: int = 0
    _keys_checked: tuple[float, bool] = field(default=(0.0, False))

    def auth_required(self) -> bool:
        if self.settings.security.api_key is not None:
            return True
        at, value = self._keys_checked
        if time.monotonic() - at > KEYS_CACHE_S:
            value = self.keys.has_keys()
            self._keys_checked = (time.monotonic(), value)
        return value

    def authenticate(self, header: str | None, api_key: str | None = None) -> Principal:
        """The caller of ``Authorization: Bearer KEY`` or, without that header, ``x-api-key: KEY``
        (Anthropic's clients send that one)."""
        token = credential(header, api_key)
        static = self.settings.security.api_key
        if static is not None and check_static(token, static.get_secret_value()):
            return Principal(name="static-key", admin=True)
        return self.keys.verify(token)


class Guard:
    def __init__(self, app: ASGIApp, state: GuardState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PROBES:
            await self.app(scope, receive, send)
            return
        ctx = RequestContext(capture=self.state.settings.security.log_content)
        token = current_request.set(ctx)
        status = {"code": 500, "started": 0}
        admitted = False
        try:
            if self.state.draining:
                raise ServiceUnavailable("the server is shutting down", retry_after=5)
            policy, path_params = match(self.state.routes, scope)
            body, receive = await self._read_body(scope, receive, policy)
            ctx.principal = self._principal(scope)
            self._authorize(ctx.principal, body, policy, path_params)
            extra = self._admit(ctx)
            admitted = True
            if ctx.capture:
                ctx.content["request"] = body.decode("utf-8", errors="replace")
            self.state.active += 1
            try:
                await self.app(scope, receive, _recording_send(send, status, extra))
            finally:
                self.state.active -= 1
        except SlmkitError as exc:
            status["code"] = error_status(scope["path"], exc)
            self.state.metrics.errors.labels(exc.code).inc()
            if isinstance(exc, RateLimited):
                self.state.metrics.rate_limited.inc()
            await _error(scope, exc)(scope, receive, send)
        except Exception as exc:
            log.exception("%s %s failed", scope["method"], scope["path"])
            if status["started"]:
                raise
            self.state.metrics.errors.labels(InternalError.code).inc()
            await _error(scope, InternalError(f"internal error: {exc.__class__.__name__}"))(scope, receive, send)
        finally:
            if admitted:
                self.state.limiter.release(ctx.principal)
            self._audit(scope, ctx, status["code"])
            current_request.reset(token)

    def _principal(self, scope: Scope) -> Principal:
        if not self.state.auth_required():
            return ANONYMOUS
        if scope["path"] == "/metrics" and self.state.settings.security.metrics_public:
            return ANONYMOUS
        if scope["path"] == "/" or scope["path"].startswith("/static/"):
            return ANONYMOUS  # the chat page holds no data; it asks for a key when its API calls get 401
        return self.state.authenticate(_header(scope, b"authorization"), _header(scope, b"x-api-key"))

    def _authorize(self, who: Principal, body: bytes, policy: Policy, path_params: dict[str, Any]) -> None:
        """The route's declared policy (see ``server.policy``)."""
        if policy.kind == "admin" and not who.admin:
            raise AdminRequired("this route changes the model store: it needs a key created with --admin")
        if policy.kind != "model" or who.models is None:
            return
        for name in _named_models(policy, path_params, body):
            try:
                canonical = self.state.registry.canonical(name, policy.model_kind)
            except ModelNotFound:
                continue  # no default model: the route says so
            if not who.may_use(canonical):
                raise Forbidden(f"this API key may not use the model '{canonical}'", param="model")

    def _admit(self, ctx: RequestContext) -> dict[str, str]:
        who = ctx.principal
        headers = self.state.limiter.admit(who)
        ctx.charge = lambda n: self.state.limiter.charge(who, n)
        return headers

    async def _read_body(self, scope: Scope, receive: Receive, policy: Policy) -> tuple[bytes, Receive]:
        """The body, read under the cap the route declares (a ``stream`` route reads its own)."""
        if policy.body == "stream":
            return b"", receive
        server = self.state.settings.server
        cap = server.max_batch_body_bytes if policy.body == "batch" else server.max_body_bytes
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            raise PayloadTooLarge(f"request body over the {cap}-byte limit")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return b"", receive
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > cap:
                raise PayloadTooLarge(f"request body over the {cap}-byte limit")
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return body, replay

    def _audit(self, scope: Scope, ctx: RequestContext, status: int) -> None:
        if not self.state.audit.enabled:
            return
        record: dict[str, Any] = {
            "key": ctx.principal.name, "route": f"{scope['method']} {scope['path']}", "model": ctx.model,
            "status": status, "prompt_tokens": ctx.prompt_tokens, "generated_tokens": ctx.generated_tokens,
            "latency_s": round(time.perf_counter() - ctx.started, 4),
            "client": (scope.get("client") or ("", 0))[0],
        }
        if ctx.capture:
            record["content"] = ctx.content
        self.state.audit.write(**record)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _named_models(policy: Policy, path_params: dict[str, Any], body: bytes) -> list[str | None]:
    """The model names a request carries (None: the default model)."""
    if policy.path_param is not None:
        return [str(path_params.get(policy.path_param, ""))]
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return []  # the route answers 400
    if not isinstance(data, dict):
        return []
    names = [data.get(f) for f in policy.fields]
    given = [n for n in names if isinstance(n, str) and n]
    return list(given) if given else [None]


def _recording_send(send: Send, status: dict[str, int], extra: dict[str, str]) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            status["code"] = message["status"]
            status["started"] = 1
            if extra:
                message = {**message, "headers": [*message.get("headers", []),
                                                  *((k.encode(), v.encode()) for k, v in extra.items())]}
        await send(message)

    return wrapped


def _error(scope: Scope, exc: SlmkitError) -> JSONResponse:
    body = error_body(scope["path"], exc)
    headers = exc.headers()
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=error_status(scope["path"], exc), headers=headers)
