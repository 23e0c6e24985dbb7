"""Bedrock's errors as our typed errors: an error answer's AWS type, and an exception message
inside an event stream.

AWS names the error in the ``x-amzn-ErrorType`` header (the transport puts it in the body's
``__type``, :func:`msgflux._transport.errors.status_error`) or in the body: the type decides
the class whatever the status a proxy may have changed. ``ThrottlingException`` is a
:class:`~msgflux.exceptions.RateLimitError`; ``ServiceUnavailableException``,
``ModelNotReadyException``, ``InternalServerException`` and the model's own errors are
:class:`~msgflux.exceptions.InternalServerError` (transient: retried, then fallen back);
``AccessDeniedException`` a :class:`~msgflux.exceptions.PermissionDeniedError`; an unknown or
expired key, a bad signature an :class:`~msgflux.exceptions.AuthenticationError`; a
``ValidationException`` saying the input is too long a
:class:`~msgflux.exceptions.ContextWindowExceededError`.
"""

from __future__ import annotations

from typing import Any

import orjson

from msgflux._transport import status_error
from msgflux.exceptions import (
    APIStatusError,
    AuthenticationError,
    ContextWindowExceededError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
)
from msgflux.formats.common import Who
from msgflux.formats.openai_chat import classify_openai_error

__all__ = ["ERROR_STATUS", "aws_error_type", "classify_bedrock_error", "stream_exception"]

ERROR_STATUS = {
    "ThrottlingException": 429,
    "ModelNotReadyException": 429,
    "ServiceQuotaExceededException": 400,
    "ValidationException": 400,
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "ResourceNotFoundException": 404,
    "ModelTimeoutException": 408,
    "ModelErrorException": 424,
    "ModelStreamErrorException": 424,
    "InternalServerException": 500,
    "ServiceUnavailableException": 503,
}
"""Bedrock's error types and the HTTP status each comes with (an exception inside an event
stream has none of its own)."""

_BY_TYPE: dict[str, type[APIStatusError]] = {
    "ThrottlingException": RateLimitError,
    "ServiceQuotaExceededException": RateLimitError,
    "ModelNotReadyException": InternalServerError,
    "ServiceUnavailableException": InternalServerError,
    "InternalServerException": InternalServerError,
    "ModelErrorException": InternalServerError,
    "ModelStreamErrorException": InternalServerError,
    "ModelTimeoutException": RequestTimeoutError,
    "AccessDeniedException": PermissionDeniedError,
    "ResourceNotFoundException": NotFoundError,
    "UnrecognizedClientException": AuthenticationError,
    "InvalidSignatureException": AuthenticationError,
    "IncompleteSignatureException": AuthenticationError,
    "ExpiredTokenException": AuthenticationError,
    "MissingAuthenticationTokenException": AuthenticationError,
}
_CONTEXT_MARKERS = (
    "too long",
    "too many input tokens",
    "exceed context limit",
    "exceeds the context",
    "context window",
    "maximum context",
)


def aws_error_type(body: Any) -> str | None:
    """The AWS error type of an error body (``__type``, ``code`` or ``Code``; the namespace
    before ``#`` and the URL after ``:`` cut off)."""
    if not isinstance(body, dict):
        return None
    raw = body.get("__type") or body.get("code") or body.get("Code")
    if not isinstance(raw, str) or not raw:
        return None
    return raw.split(":", 1)[0].rsplit("#", 1)[-1]


def _message(body: dict[str, Any]) -> str:
    message = body.get("message") or body.get("Message") or ""
    return message if isinstance(message, str) else ""


def classify_bedrock_error(status: int, body: Any) -> type[APIStatusError] | None:
    """The class of a Bedrock error answer (see the module docstring)."""
    kind = aws_error_type(body)
    if kind == "ValidationException" or (kind is None and status == 400):
        assert isinstance(body, dict) or kind is None
        text = _message(body).lower() if isinstance(body, dict) else str(body).lower()
        if any(marker in text for marker in _CONTEXT_MARKERS):
            return ContextWindowExceededError
    cls = _BY_TYPE.get(kind) if kind is not None else None
    return cls or classify_openai_error(status, body)


def stream_exception(name: str, data: bytes, who: Who) -> APIStatusError:
    """The typed error of an exception message inside an event stream: ``name`` is its
    ``:exception-type`` (``throttlingException``), ``data`` its JSON payload."""
    kind = name[:1].upper() + name[1:]
    try:
        payload: Any = orjson.loads(data) if data else {}
    except orjson.JSONDecodeError:
        payload = {"message": data[:500].decode("utf-8", "replace")}
    if not isinstance(payload, dict):
        payload = {"message": str(payload)}
    payload.setdefault("__type", kind)
    return status_error(
        ERROR_STATUS.get(kind, 500),
        orjson.dumps(payload),
        None,
        provider=who[0],
        model_id=who[1],
        classify=classify_bedrock_error,
    )
