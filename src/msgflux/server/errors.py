"""Errors as clients expect them: OpenAI's JSON shape and a status that means something.

Every error the server sends is ``{"error": {"message", "type", "param", "code"}}``.
:class:`HTTPError` carries one; :func:`from_gateway` is the one place a gateway failure becomes
a status:

* a deployment skipped at its own rate or concurrency limit (and no other called), or every
  call answered 429: **429** with ``Retry-After`` in seconds;
* every deployment skipped because its breaker is open (or a probe is in flight), maybe
  with others that cannot serve the request: **503** with ``Retry-After``;
* the call's ``deadline`` passed, or every attempt timed out: **504**;
* every deployment that was called rejected the request itself (400/422, e.g. the context
  window): **400** with the upstream's message, since another try cannot help;
* a request no deployment can serve (every one skipped as unsupported: a tool choice, a
  field, a mode it cannot honour): **400** ``unsupported_request``, naming what and by whom;
* nothing eligible (time windows): **503**;
* anything else, every deployment failed: **502**, the message listing each attempt (code
  ``upstream_overloaded`` when every one said it is overloaded: 503 or Anthropic's 529).

Messages pass through :func:`msgflux._secrets.scrub`, so no key the process knows is echoed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from msgflux._secrets import scrub
from msgflux.exceptions import (
    APITimeoutError,
    Attempt,
    BadRequestError,
    ModelRouterError,
    ProviderError,
    RateLimitError,
    is_overloaded,
)
from msgflux.formats.openai_chat import error_body
from msgflux.models.gateway.limits import REASON_CONCURRENCY, REASON_RPM, REASON_TPM

__all__ = [
    "HTTPError",
    "error_body",
    "from_gateway",
    "from_validation",
]

Headers = list[tuple[bytes, bytes]]

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "service_unavailable",
    504: "timeout_error",
}


class HTTPError(Exception):
    """An error response: status, OpenAI error fields and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        message = scrub(message)
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "api_error")
        self.headers = headers or []

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.param, self.code)


_PARAM = re.compile(
    r"^([A-Za-z_][A-Za-z0-9_]*(?:\[\d+\]|\['[A-Za-z_][A-Za-z0-9_]*'\])*)(?=[\s:]|$)"
)
_NOT_PARAMS = frozenset({"the", "a", "an", "this", "unexpected"})


def from_validation(exc: BaseException) -> HTTPError:
    """A 400 for a caller mistake found by the library's request checks, naming the field."""
    message = str(exc)
    match = _PARAM.match(message)
    param = match.group(1) if match and match.group(1) not in _NOT_PARAMS else None
    if param is not None:
        param = re.sub(r"\['([A-Za-z0-9_]+)'\]", r".\1", param)  # messages[0]['role'] -> .role
    return HTTPError(400, message, param=param, code="invalid_value" if param else None)


_LIMITS = (REASON_RPM, REASON_TPM, REASON_CONCURRENCY)
"""Skips at a deployment's own limits: the request is well-formed, the capacity is not there."""


def _retry_after(seconds: float | None) -> Headers:
    value = 1 if seconds is None else max(1, math.ceil(seconds))
    return [(b"retry-after", str(value).encode())]


def _called(attempts: Sequence[Attempt]) -> list[Attempt]:
    return [a for a in attempts if a.skipped is None and not a.cancelled]


def from_gateway(exc: BaseException) -> HTTPError:
    """The response for a gateway failure (see the module docstring)."""
    if isinstance(exc, ModelRouterError):
        return _router(exc)
    if isinstance(exc, ProviderError):  # a raise_on error comes out as itself
        return _provider(exc)
    return HTTPError(502, f"{type(exc).__name__}: {exc}", code="upstream_error")


def _router(exc: ModelRouterError) -> HTTPError:
    text = str(exc)
    if exc.message.startswith("Deadline of"):
        return HTTPError(504, text, code="deadline_exceeded")
    called = _called(exc.attempts)
    errors = [a.exception for a in called if a.exception is not None]
    skips = [a for a in exc.attempts if a.skipped is not None]
    if not errors:
        reasons = [a.skipped or "" for a in skips]
        if reasons and all(r.startswith("unsupported") for r in reasons):
            return HTTPError(400, text, code="unsupported_request")
        if any(r.startswith(_LIMITS) for r in reasons):
            return HTTPError(429, text, code="rate_limited", headers=_retry_after(exc.retry_after))
        headers = _retry_after(exc.retry_after) if exc.retry_after is not None else []
        return HTTPError(503, text, code="no_deployment_available", headers=headers)
    if all(isinstance(e, APITimeoutError) for e in errors):
        # A deadline that cut the last attempt short surfaces as that attempt's timeout.
        return HTTPError(504, text, code="upstream_timeout")
    if all(isinstance(e, RateLimitError) for e in errors):
        waits = [e.retry_after for e in errors if isinstance(e, ProviderError) and e.retry_after]
        if exc.retry_after is not None:
            waits.append(exc.retry_after)
        return HTTPError(
            429, text, code="rate_limited", headers=_retry_after(min(waits) if waits else None)
        )
    if all(isinstance(e, BadRequestError) for e in errors):
        last = errors[-1]
        assert isinstance(last, BadRequestError)
        return _provider(last, _upstream_message(last) or text)
    if all(is_overloaded(e) for e in errors):
        return HTTPError(502, text, code="upstream_overloaded")
    return HTTPError(502, text, code="upstream_error")


def _provider(exc: ProviderError, text: str | None = None) -> HTTPError:
    message = text or str(exc)
    code = _upstream_code(exc)
    if isinstance(exc, BadRequestError):
        return HTTPError(400, message, code=code)
    if isinstance(exc, RateLimitError):
        return HTTPError(429, message, code=code, headers=_retry_after(exc.retry_after))
    return HTTPError(502, message, code=code or "upstream_error")


def _upstream_message(exc: ProviderError) -> str | None:
    """The upstream's own words for a rejected request (``error.message`` of its body): what
    the client would have read calling it directly."""
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) and message else None


def _upstream_code(exc: ProviderError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return str(error["code"])
    from msgflux.exceptions import ContentPolicyError, ContextWindowExceededError

    if isinstance(exc, ContextWindowExceededError):
        return "context_length_exceeded"
    if isinstance(exc, ContentPolicyError):
        return "content_filter"
    return None
