"""What each route needs, declared beside it and enforced by the guard.

* ``open``: anyone who passed authentication (lists, health, the page).
* ``model``: the request names a model (body fields or a path parameter); a key scoped to
  other models gets 403 ``model_not_allowed`` before the route runs.
* ``admin``: the route changes the store (pull, create, copy, delete, push); a key without
  the admin scope gets 403 ``admin_required``.
* ``owner``: the route reads or deletes records the caller created (stored responses); the
  caller must be authenticated whenever keys exist (as for every route), and the handler
  answers 404 for records of another principal.

A route may also say how large its body may be: ``json`` (``server.max_body_bytes``, the
default), ``batch`` (``server.max_batch_body_bytes``: embedding batches) or ``stream`` (the guard
does not read it; the route reads and caps it itself, as a blob upload does).

``check_routes`` refuses to build an app with a route that declares nothing, so a new route
cannot forget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

F = TypeVar("F", bound=Callable[..., Any])
Kind = Literal["open", "model", "admin", "owner"]
Body = Literal["json", "batch", "stream"]
_ATTR = "__slm_policy__"


@dataclass(frozen=True)
class Policy:
    kind: Kind
    fields: tuple[str, ...] = ()  # body fields that name models
    path_param: str | None = None  # or the path parameter that does
    model_kind: str = "chat"  # which default model an absent name means (chat | embedding)
    body: Body = "json"  # which cap the guard reads the body under (stream: the route reads it)


def _declare(policy: Policy) -> Callable[[F], F]:
    def mark(endpoint: F) -> F:
        setattr(endpoint, _ATTR, policy)
        return endpoint

    return mark


def open_route() -> Callable[[F], F]:
    return _declare(Policy("open"))


def model_route(*fields: str, path_param: str | None = None, model_kind: str = "chat",
                body: Body = "json") -> Callable[[F], F]:
    return _declare(Policy("model", fields or (("model",) if path_param is None else ()), path_param, model_kind,
                           body))


def admin_route(body: Body = "json") -> Callable[[F], F]:
    return _declare(Policy("admin", body=body))


def owner_route() -> Callable[[F], F]:
    return _declare(Policy("owner"))


def policy_of(route: BaseRoute) -> Policy | None:
    """The declared policy; routes that are not API routes (static files, the OpenAPI
    document and its pages) are open."""
    if isinstance(route, APIRoute):
        return getattr(route.endpoint, _ATTR, None)
    return Policy("open")


def flat_routes(routes: list[BaseRoute]) -> list[BaseRoute]:
    """The routes with included routers opened up (FastAPI >= 0.160 keeps them as one
    ``_IncludedRouter`` entry each; this app includes them without a prefix)."""
    out: list[BaseRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            prefix = getattr(getattr(route, "include_context", None), "prefix", "")
            if prefix:
                raise RuntimeError(f"routers are included without a prefix here, not {prefix!r}")
            out += flat_routes(list(inner.routes))
        else:
            out.append(route)
    return out


def check_routes(routes: list[BaseRoute]) -> None:
    missing = [r.path for r in routes if isinstance(r, APIRoute) and policy_of(r) is None]
    if missing:
        raise RuntimeError(f"routes without a policy (declare open_route, model_route or admin_route): {missing}")


def match(routes: list[BaseRoute], scope: Scope) -> tuple[Policy, dict[str, Any]]:
    """The policy of the route that will serve ``scope``, and its path parameters."""
    for route in routes:
        found, child = route.matches(scope)
        if found is Match.FULL:
            return policy_of(route) or Policy("open"), dict(child.get("path_params", {}))
    return Policy("open"), {}
