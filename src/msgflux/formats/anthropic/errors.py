"""Anthropic's errors, both ways: an upstream's ``error.type`` as our typed error, and our
errors in Anthropic's body (``{"type": "error", "error": {"type", "message"}}``)."""

from __future__ import annotations

from typing import Any

import orjson

from msgflux._secrets import scrub
from msgflux.exceptions import (
    APIStatusError,
    AuthenticationError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    is_overloaded,
)
from msgflux.formats.openai_chat import classify_openai_error

__all__ = [
    "ERROR_STATUS",
    "classify_anthropic_error",
    "error_body",
    "error_event",
    "error_type",
    "interrupted_event",
]

ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""``error.type`` -> the HTTP status it comes with (an in-stream ``error`` event has none)."""

_BY_TYPE: dict[str, type[APIStatusError]] = {
    "authentication_error": AuthenticationError,
    "permission_error": PermissionDeniedError,
    "not_found_error": NotFoundError,
    "rate_limit_error": RateLimitError,
    "overloaded_error": InternalServerError,
    "api_error": InternalServerError,
    "timeout_error": InternalServerError,
}

_ERROR_TYPES = {status: kind for kind, status in ERROR_STATUS.items()}


def classify_anthropic_error(status: int, body: Any) -> type[APIStatusError] | None:
    """Anthropic's ``error.type`` (a proxy may change the status, never the type), then the
    OpenAI-family wording of a 400 ("prompt is too long", "content filtering")."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    cls = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    return cls or classify_openai_error(400 if status == 413 else status, body)


def error_type(status: int) -> str:
    """Anthropic's ``error.type`` for an HTTP status (:data:`ERROR_STATUS` inverted)."""
    return _ERROR_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")


def error_body(kind: str, message: str) -> dict[str, Any]:
    """Anthropic's error body (the message scrubbed of every key the process knows)."""
    return {"type": "error", "error": {"type": kind, "message": scrub(message)}}


def error_event(kind: str, message: str) -> bytes:
    """An ``error`` SSE event (the body of an error response is its ``data``)."""
    return b"event: error\ndata: " + orjson.dumps(error_body(kind, message)) + b"\n\n"


def interrupted_event(exc: BaseException) -> bytes:
    """The ``error`` event that ends a stream broken mid-way."""
    kind = "overloaded_error" if is_overloaded(exc) else "api_error"
    return error_event(kind, f"{type(exc).__name__}: {exc}")
