"""Gemini's errors, both ways: an upstream's error body as our typed error (its ``status``
word, its ``RetryInfo``), and our errors in Gemini's body
(``{"error": {"code", "message", "status"}}``)."""

from __future__ import annotations

import math
from typing import Any

import orjson

from msgflux._secrets import scrub
from msgflux._transport import status_error
from msgflux.exceptions import (
    APIStatusError,
    AuthenticationError,
    ContextWindowExceededError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    is_overloaded,
)
from msgflux.formats.common import Who
from msgflux.formats.openai_chat import classify_openai_error

__all__ = [
    "STATUS_WORDS",
    "classify_gemini_error",
    "error_body",
    "error_event",
    "interrupted_event",
    "refine",
    "retry_delay",
    "status_word",
    "stream_error",
]

_BY_STATUS: dict[str, type[APIStatusError]] = {
    "UNAUTHENTICATED": AuthenticationError,
    "PERMISSION_DENIED": PermissionDeniedError,
    "NOT_FOUND": NotFoundError,
    "RESOURCE_EXHAUSTED": RateLimitError,
    "INTERNAL": InternalServerError,
    "UNAVAILABLE": InternalServerError,
    "DEADLINE_EXCEEDED": InternalServerError,
}
_CONTEXT_MARKERS = ("exceeds the maximum number of tokens", "input token count")

STATUS_WORDS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
"""HTTP status -> the ``google.rpc.Code`` name Google's APIs put in ``error.status``."""


def classify_gemini_error(status: int, body: Any) -> type[APIStatusError] | None:
    """A bad key is a 400 ``INVALID_ARGUMENT`` with reason ``API_KEY_INVALID``; a too-long
    prompt a 400 "exceeds the maximum number of tokens"; the ``status`` word is kept even when
    a proxy changes the HTTP status."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return classify_openai_error(status, body)
    for detail in error.get("details") or ():
        if isinstance(detail, dict) and detail.get("reason") == "API_KEY_INVALID":
            return AuthenticationError
    message = error.get("message")
    if status == 400 and isinstance(message, str):
        lowered = message.lower()
        if any(marker in lowered for marker in _CONTEXT_MARKERS):
            return ContextWindowExceededError
        if "api key not valid" in lowered:
            return AuthenticationError
    word = error.get("status")
    cls = _BY_STATUS.get(word) if isinstance(word, str) else None
    return cls or classify_openai_error(status, body)


def retry_delay(body: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` detail (``"retryDelay": "47s"``), or None."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith("RetryInfo"):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                seconds = float(delay[:-1])
            except ValueError:
                return None
            return seconds if seconds >= 0 and math.isfinite(seconds) else None
    return None


def refine(exc: APIStatusError) -> None:
    """Give ``exc`` the retry delay Gemini put in its body when no header gave one."""
    if exc.retry_after is None:
        exc.retry_after = retry_delay(exc.body)


def stream_error(payload: dict[str, Any], data: bytes, who: Who) -> APIStatusError:
    """The typed error of an ``{"error": ...}`` event inside a 200 stream (its ``code`` is
    the status the error would have had as an answer)."""
    error = payload.get("error")
    code = error.get("code") if isinstance(error, dict) else None
    status = code if isinstance(code, int) and 400 <= code <= 599 else 500
    exc = status_error(
        status, data, None, provider=who[0], model_id=who[1], classify=classify_gemini_error
    )
    refine(exc)
    return exc


def status_word(status: int) -> str:
    """Gemini's ``error.status`` for an HTTP status (:data:`STATUS_WORDS`, else the word of
    the status class)."""
    return STATUS_WORDS.get(status) or ("INTERNAL" if status >= 500 else "INVALID_ARGUMENT")


def error_body(status: int, message: str) -> dict[str, Any]:
    """Gemini's error body (the message scrubbed of every key the process knows)."""
    return {"error": {"code": status, "message": scrub(message), "status": status_word(status)}}


def error_event(status: int, message: str) -> bytes:
    """The SSE event of an error inside a stream (Gemini sends the error body as data)."""
    return b"data: " + orjson.dumps(error_body(status, message)) + b"\r\n\r\n"


def interrupted_event(exc: BaseException) -> bytes:
    """The event that ends a stream broken mid-way (the error body as data)."""
    return error_event(503 if is_overloaded(exc) else 500, f"{type(exc).__name__}: {exc}")
