"""What the server knows about the request being handled, shared along its path.

The guard middleware creates a ``RequestContext`` for each request; the service fills in the
model and token counts; the middleware writes the audit line and charges rate limits from it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from slmkit.store.aliases import expand


@dataclass(frozen=True)
class Principal:
    """Who is calling: a stored key, the static key, or nobody (auth off)."""

    name: str
    key_id: str | None = None
    models: frozenset[str] | None = None  # None = every model
    rpm: int | None = None
    tpm: int | None = None
    admin: bool = False  # may change the store (pull, create, copy, delete)

    def may_use(self, model: str) -> bool:
        """``model`` is a served name; the key's list may name it with a tag or an alias."""
        return self.models is None or model in self.models or any(expand(m) == model for m in self.models)


ANONYMOUS = Principal(name="anonymous", admin=True)  # authentication is off: the operator


@dataclass
class RequestContext:
    principal: Principal = ANONYMOUS
    model: str | None = None
    prompt_tokens: int = 0
    generated_tokens: int = 0
    started: float = field(default_factory=time.perf_counter)
    charge: Callable[[int], None] | None = None  # tokens-per-minute accounting of the key
    capture: bool = False  # keep prompt and output text for the audit log (--log-content)
    content: dict[str, str] = field(default_factory=dict)

    def add_prompt(self, model: str, tokens: int) -> None:
        self.model = model
        self.prompt_tokens += tokens
        if self.charge is not None and tokens:
            self.charge(tokens)

    def add_output(self, tokens: int, text: str) -> None:
        self.generated_tokens += tokens
        if self.charge is not None and tokens:
            self.charge(tokens)
        if self.capture and text:
            self.content["output"] = self.content.get("output", "") + text


current_request: ContextVar[RequestContext | None] = ContextVar("slm_request", default=None)


def request_context() -> RequestContext:
    """The current request's context (a detached one outside a request)."""
    ctx = current_request.get()
    return ctx if ctx is not None else RequestContext()
