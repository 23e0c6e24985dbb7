"""What went wrong, as a :mod:`msgflux.exceptions` error: one function per kind of failure.

* :func:`status_error` for an HTTP answer with an error status (the class from the status,
  refined by the provider's ``classify`` hook, which knows its own wording for "context window
  exceeded" or "content filter");
* :func:`transport_error` for a request that got no (complete) answer;
* :func:`parse_retry_after` for how long the server asked us to wait.

Each has a test that fails when a status or a transport exception is left unmapped.
"""

from __future__ import annotations

import asyncio
import http.client
import math
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import orjson
import urllib3.exceptions

from msgflux._secrets import scrub
from msgflux._time import as_clock
from msgflux.exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RequestTimeoutError,
)

__all__ = [
    "Classify",
    "error_class_for_status",
    "error_message",
    "header",
    "parse_retry_after",
    "status_error",
    "transport_error",
    "transport_error_class",
]

Classify = Callable[[int, Any], "type[APIStatusError] | None"]
"""A provider's refinement: ``(status, parsed body) -> error class`` or None for the default."""

_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_class_for_status(status: int) -> type[APIStatusError]:
    """The error class of a non-2xx status, before any provider refinement.

    400/413/422 are :class:`BadRequestError`; 401/403/404/408/409/429 have their own classes;
    5xx (and any 52x a vendor invents, such as Anthropic's 529) is :class:`InternalServerError`;
    any other status is a plain :class:`APIStatusError`.
    """
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    if 500 <= status <= 599:
        return InternalServerError
    return APIStatusError


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup (the clients' maps are; plain dicts are not)."""
    if not headers:
        return None
    value: str | None = headers.get(name)
    if value is None and type(headers) is dict:
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return str(candidate)
    return value


def body_text(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    if isinstance(body, (bytes, bytearray)):
        return bytes(body).decode("utf-8", "replace")
    try:
        return orjson.dumps(body).decode()
    except TypeError:
        return str(body)


def error_message(body: Any) -> str:
    """The human part of an error body: OpenAI's, Anthropic's and Google's shapes, else text."""
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            for key in ("message", "detail", "msg"):
                value = err.get(key)
                if isinstance(value, str) and value:
                    return value
        elif isinstance(err, str) and err:
            return err
        for key in ("message", "detail"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
    text = body_text(body).strip()
    return text[:500] + ("..." if len(text) > 500 else "")


def status_error(
    status: int,
    raw: bytes | str | None,
    headers: Mapping[str, str] | None = None,
    *,
    provider: str | None = None,
    model_id: str | None = None,
    classify: Classify | None = None,
    hint: str | None = None,
) -> APIStatusError:
    """The typed error for an HTTP answer with an error status (returned, not raised);
    ``hint`` ends its message (what the caller may have got wrong).

    Every known secret is scrubbed from the body, the message and the request id (the
    exception does that itself, see :class:`~msgflux.exceptions.ProviderError`). AWS's JSON
    APIs name the error in an ``x-amzn-ErrorType`` header rather than the body: its value is
    put in a JSON body's ``__type`` (where those APIs otherwise write it), for ``classify``.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, (bytes, bytearray)) else (raw or "")
    body: Any = text
    if text:
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    aws_type = header(headers, "x-amzn-errortype")
    if aws_type and type(body) is dict and "__type" not in body:
        body["__type"] = aws_type.split(":", 1)[0]
    cls = (classify(status, body) if classify is not None else None) or error_class_for_status(
        status
    )
    detail = error_message(body) or http.client.responses.get(status, "error")
    if hint:
        detail = f"{detail} ({hint})"
    return cls(
        f"HTTP {status}: {detail}",
        provider=provider,
        model_id=model_id,
        status_code=status,
        body=body,
        request_id=header(headers, "x-request-id")
        or header(headers, "request-id")
        or header(headers, "x-amzn-requestid"),
        retry_after=parse_retry_after(headers),
    )


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, else ``Retry-After``.

    ``Retry-After`` may be seconds (``"2"``, ``"1.5"``) or an HTTP date, measured from
    ``now`` (epoch seconds; default the real clock). Unparsable, negative or infinite values
    give None.
    """
    ms = header(headers, "retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0 and math.isfinite(value):
            return value
    raw = header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        current = as_clock(None).time() if now is None else now
        return max(when.timestamp() - current, 0.0)
    if seconds < 0 or not math.isfinite(seconds):
        return None
    return seconds


# -- transport exceptions ----------------------------------------------------------------------
_NOT_TIMEOUT: tuple[type[BaseException], ...] = (urllib3.exceptions.NewConnectionError,)
"""Connection refused/DNS failures that urllib3 files under ConnectTimeoutError for history."""

_TIMEOUTS: tuple[type[BaseException], ...] = (
    TimeoutError,
    asyncio.TimeoutError,
    urllib3.exceptions.TimeoutError,
)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


def transport_error_class(exc_type: type[BaseException]) -> type[APIConnectionError] | None:
    """:class:`APITimeoutError` or :class:`APIConnectionError` for a transport exception type.

    None means the exception is not about the transport (a bug, a cancellation) and must
    propagate unchanged.
    """
    if issubclass(exc_type, _NOT_TIMEOUT):
        return APIConnectionError
    if issubclass(exc_type, _TIMEOUTS):
        return APITimeoutError
    if issubclass(exc_type, _CONNECTION_ERRORS):
        return APIConnectionError
    return None


def transport_error(
    exc: BaseException,
    *,
    provider: str | None = None,
    model_id: str | None = None,
    timeout: float | None = None,
) -> ProviderError | None:
    """The typed error for a request that got no (complete) answer, or None if not ours."""
    cause = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        cause = exc.reason
    cls = transport_error_class(type(cause))
    if cls is None:
        return None
    if cls is APITimeoutError:
        message = f"timed out after {timeout:g}s" if timeout is not None else "timed out"
    else:
        text = scrub(str(cause))
        message = f"connection error: {type(cause).__name__}" + (f": {text}" if text else "")
    return cls(message, provider=provider, model_id=model_id)
