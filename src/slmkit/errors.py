"""One error hierarchy for the whole package.

Every expected failure is a subclass of :class:`SlmkitError`. Each carries an HTTP
status, a machine-readable ``code`` and, where it applies, the request parameter at
fault. The server renders them once (see ``server/errors.py``); the CLI prints their
message on one line and exits non-zero.
"""

from __future__ import annotations


class SlmkitError(Exception):
    """Base of every error slmkit raises on purpose."""

    status: int = 500
    code: str = "internal_error"
    type: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers the error should be sent with."""
        return {}


class InvalidRequest(SlmkitError):
    status = 400
    code = "invalid_request"
    type = "invalid_request_error"


class NotSupported(InvalidRequest):
    """A feature of the API this server does not offer (Ollama's ``/api/push``): a 400, the
    client's request, not a server failure."""

    code = "not_supported"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(InvalidRequest):
    """A body that is not JSON (only ``application/json`` is read, so no form post is a request)."""

    status = 415
    code = "unsupported_media_type"


class HeadersTooLarge(InvalidRequest):
    status = 431
    code = "request_header_fields_too_large"




class ModelNotFound(SlmkitError):
    status = 404
    code = "model_not_found"
    type = "invalid_request_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 model: str | None = None) -> None:
        super().__init__(message, param=param, code=code)
        self.model = model  # the name asked for, when a served name was unknown


class NotFound(SlmkitError):
    """A stored object (a response) that does not exist, has expired, or belongs to another key."""

    status = 404
    code = "not_found"
    type = "invalid_request_error"


class ModelLoadError(SlmkitError):
    status = 500
    code = "model_load_failed"


class Unauthorized(SlmkitError):
    status = 401
    code = "invalid_api_key"
    type = "authentication_error"


class Forbidden(SlmkitError):
    status = 403
    code = "model_not_allowed"
    type = "permission_error"


class AdminRequired(Forbidden):
    """A store-changing route called with a key that lacks the admin scope."""

    code = "admin_required"


class InternalError(SlmkitError):
    """Something failed that should not have; the server log holds the traceback."""

    status = 500
    code = "internal_error"


class _RetryLater(SlmkitError):
    def __init__(self, message: str, *, retry_after: float = 1.0, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class Overloaded(_RetryLater):
    """The wait queue is full."""

    status = 429
    code = "server_overloaded"
    type = "server_error"


class RateLimited(_RetryLater):
    status = 429
    code = "rate_limit_exceeded"
    type = "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float = 1.0, code: str | None = None,
                 limit_headers: dict[str, str] | None = None) -> None:
        super().__init__(message, retry_after=retry_after, code=code)
        self.limit_headers = limit_headers or {}  # the key's x-ratelimit-* headers

    def headers(self) -> dict[str, str]:
        return {**self.limit_headers, **super().headers()}


class ServiceUnavailable(_RetryLater):
    """The server is draining or not ready."""

    status = 503
    code = "service_unavailable"


class ClientDisconnected(SlmkitError):
    """The client went away before its answer was ready (nginx's 499)."""

    status = 499
    code = "client_closed_request"


class EngineError(SlmkitError):
    """The engine failed while generating."""

    status = 500
    code = "engine_error"


class ModelClosed(SlmkitError):
    """A model handle of the Python API was used after ``close()``."""

    status = 500
    code = "model_closed"


class OutputInvalid(SlmkitError):
    """The model's output does not parse or validate as the requested structure (for example
    because it was cut at ``max_tokens``)."""

    status = 500
    code = "invalid_output"


class StoreError(SlmkitError):
    """A problem with the local model store (bad name, corrupt file, ...)."""

    status = 400
    code = "store_error"
    type = "invalid_request_error"


class ModelfileError(InvalidRequest):
    """A Modelfile that does not parse."""

    code = "invalid_modelfile"


class InvalidName(StoreError):
    """A model name or tag that breaks the naming rules."""

    code = "invalid_model_name"


class HubError(StoreError):
    """The Hugging Face Hub refused or failed a download."""

    code = "hub_error"


class CorruptGGUF(StoreError):
    """A file that is not a readable GGUF."""

    code = "corrupt_gguf"


class TemplateSyntaxError(InvalidRequest):
    """A chat template (Jinja or Go) that does not parse."""

    code = "invalid_template"


class ConversionError(SlmkitError):
    """A model could not be converted (missing files, unsupported layout)."""

    status = 500
    code = "conversion_failed"
