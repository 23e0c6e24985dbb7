"""Every error msgflux raises.

Configuration mistakes raise the built-in ``TypeError``/``ValueError``/``AttributeError``
(as the msgflux docs promise); everything that happens while talking to a model is one of::

    MsgFluxError
     ├─ ModelRouterError                 every eligible deployment failed, or none was eligible
     ├─ ProviderError                    .provider .model_id .status_code .body .retry_after
     │   ├─ APIConnectionError           the request never got an HTTP answer
     │   │   └─ APITimeoutError          ... because it took too long
     │   ├─ APIResponseValidationError   a 2xx answer that is not what the protocol says
     │   │   └─ ResponseTooLargeError    ... because it is over a size cap (body or SSE event)
     │   └─ APIStatusError               an HTTP answer with a 4xx/5xx status
     │       ├─ BadRequestError          400, 422
     │       │   ├─ ContextWindowExceededError
     │       │   └─ ContentPolicyError
     │       ├─ AuthenticationError      401 (also: no API key configured)
     │       ├─ PermissionDeniedError    403
     │       ├─ NotFoundError            404
     │       ├─ RequestTimeoutError      408
     │       ├─ ConflictError            409
     │       ├─ RateLimitError           429
     │       └─ InternalServerError      5xx
     ├─ StreamInterruptedError           a stream broke after its first chunk; .partial
     └─ UnsupportedFeatureError          (also a ValueError) this provider cannot express
                                         what the request asks for; raised before sending

``ProviderError.transient`` says whether trying the same deployment again can help
(429, 408, 409, 5xx, timeouts, connection errors).

No secret the process knows (API keys, Redis passwords) survives in an error: a
:class:`ProviderError` scrubs its message, ``body`` and ``request_id`` when it is built, and
:class:`Attempt` scrubs what it reports of other exceptions (see ``msgflux._secrets``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from msgflux._secrets import scrub, scrub_value

__all__ = [
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AbortRequestedError",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ContentPolicyError",
    "ContextWindowExceededError",
    "InternalServerError",
    "ModelRouterError",
    "MsgFluxError",
    "NotFoundError",
    "PermissionDeniedError",
    "ProviderError",
    "RateLimitError",
    "RequestTimeoutError",
    "ResponseTooLargeError",
    "StreamInterruptedError",
    "UnsupportedFeatureError",
    "is_overloaded",
    "is_transient",
]


class MsgFluxError(Exception):
    """Base class of every error raised while running a model or a gateway."""


class ProviderError(MsgFluxError):
    """A model deployment failed; carries what the provider told us."""

    transient = False

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model_id: str | None = None,
        status_code: int | None = None,
        body: Any = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        message = scrub(message)
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model_id = model_id
        self.status_code = status_code
        self.body = scrub_value(body)
        self.request_id = scrub(request_id) if request_id else request_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = "/".join(p for p in (self.provider, self.model_id) if p)
        parts = [f"[{where}] {self.message}" if where else self.message]
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.request_id:
            parts.append(f"request_id={self.request_id}")
        if self.retry_after is not None:
            parts.append(f"retry_after={self.retry_after:g}s")
        return " ".join(parts)

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[ProviderError], message: str, state: dict[str, Any]) -> ProviderError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class APIConnectionError(ProviderError):
    """No HTTP answer: connection refused or reset, DNS failure, dropped connection."""

    transient = True


class APITimeoutError(APIConnectionError):
    """The attempt took longer than its timeout and was abandoned."""


class APIResponseValidationError(ProviderError):
    """The provider answered 2xx but the body is not what the protocol says.

    Not transient: the same deployment will likely answer the same way, so a gateway falls
    back at once and the breaker does not count it (the provider is up, just broken)."""


class ResponseTooLargeError(APIResponseValidationError):
    """The answer (or one SSE event) is over its size cap, decompressed size counted."""


class APIStatusError(ProviderError):
    """The provider answered with an error status."""


class BadRequestError(APIStatusError):
    """400/422: the request itself is wrong; retrying or falling back rarely helps."""


class ContextWindowExceededError(BadRequestError):
    """The prompt plus ``max_tokens`` does not fit the model's context window."""


class ContentPolicyError(BadRequestError):
    """The provider's content filter refused the request."""


class AuthenticationError(APIStatusError):
    """401, or no API key configured for the provider."""


class PermissionDeniedError(APIStatusError):
    """403."""


class NotFoundError(APIStatusError):
    """404: unknown model or endpoint."""


class RequestTimeoutError(APIStatusError):
    """408 from the provider."""

    transient = True


class ConflictError(APIStatusError):
    """409."""

    transient = True


class RateLimitError(APIStatusError):
    """429: slow down; ``retry_after`` says for how long when the provider told us."""

    transient = True


class InternalServerError(APIStatusError):
    """5xx."""

    transient = True


class AbortRequestedError(MsgFluxError):
    """The caller asked to stop (a user pressed Esc). A stream ended with it
    (``finish(error=AbortRequestedError(...), status="interrupted")``) tells its finalizers
    ``"interrupted"``, not ``"failed"``."""


class StreamInterruptedError(MsgFluxError):
    """A stream failed after it had produced output; ``partial`` is what arrived."""

    def __init__(
        self,
        message: str,
        *,
        partial: str = "",
        model_name: str | None = None,
        cause: BaseException | None = None,
    ) -> None:
        message = scrub(message)
        super().__init__(message)
        self.message = message
        self.partial = partial
        self.model_name = model_name
        self.cause = cause


class UnsupportedFeatureError(MsgFluxError, ValueError):
    """A provider cannot express what the request asks for (``n=3`` on the local model, a
    forced tool call on a model that calls none). Raised before anything is sent; a gateway
    records it as a skip of that deployment (it says nothing about its health) and moves on.
    """


def is_transient(exc: BaseException) -> bool:
    """True for errors where the same deployment may well succeed if asked again."""
    return isinstance(exc, ProviderError) and exc.transient


OVERLOADED_STATUSES = (503, 529)
"""An upstream's "busy, try later": OpenAI's 503, Anthropic's 529 ``overloaded_error``."""


def is_overloaded(exc: BaseException) -> bool:
    """An upstream said it is overloaded (a stream it broke that way too)."""
    if isinstance(exc, StreamInterruptedError) and exc.cause is not None:
        exc = exc.cause
    return isinstance(exc, ProviderError) and exc.status_code in OVERLOADED_STATUSES


@dataclasses.dataclass(frozen=True)
class Attempt:
    """One entry of ``ModelRouterError.attempts``: a call to, or a skip of, one deployment."""

    model_name: str
    provider: str
    model_id: str
    attempt: int
    """1-based attempt number on this deployment (0 for a skip)."""
    exception: BaseException | None
    started_at: float
    """Wall-clock start, seconds since the epoch."""
    duration: float
    """Seconds the attempt took (0 for a skip)."""
    skipped: str | None = None
    """Why the deployment was not called ("circuit open", "rpm limit", ...), or None."""
    retry_at: float | None = None
    """For a skip: when the deployment is expected to be usable again (epoch seconds)."""
    hedge: bool = False
    """The attempt was a hedge: started in parallel because an earlier one was slow."""
    cancelled: bool = False
    """The attempt was called but cancelled because a parallel attempt answered first."""

    def describe(self) -> str:
        who = f"{self.model_name} ({self.provider}/{self.model_id})"
        if self.skipped is not None:
            extra = ""
            if self.retry_at is not None:
                wait = max(self.retry_at - self.started_at, 0.0)
                extra = f", usable again in {wait:.1f}s"
            return f"{who}: skipped, {self.skipped}{extra}"
        exc = self.exception
        if self.cancelled:
            what = "cancelled, a parallel attempt answered first"
        else:
            what = "ok" if exc is None else f"{type(exc).__name__}: {scrub(str(exc))}"
        hedge = " [hedge]" if self.hedge else ""
        return f"{who} attempt {self.attempt}{hedge}: {what} ({self.duration * 1000:.1f} ms)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name,
            "provider": self.provider,
            "model_id": self.model_id,
            "attempt": self.attempt,
            "error": None if self.exception is None else type(self.exception).__name__,
            "message": None if self.exception is None else scrub(str(self.exception)),
            "started_at": self.started_at,
            "duration": self.duration,
            "skipped": self.skipped,
            "retry_at": self.retry_at,
            "hedge": self.hedge,
            "cancelled": self.cancelled,
        }


class ModelRouterError(MsgFluxError):
    """Every eligible deployment failed (or none was eligible).

    ``exceptions`` and ``model_info`` (``(model_name, provider, exception)`` tuples) keep
    msgflux's shape; ``attempts`` has one :class:`Attempt` per call or skip, in order.
    """

    def __init__(
        self,
        exceptions: Sequence[BaseException] | None = None,
        model_info: Sequence[tuple[str, str, BaseException]] | None = None,
        message: str | None = None,
        *,
        attempts: Sequence[Attempt] = (),
        retry_after: float | None = None,
    ) -> None:
        self.exceptions = list(exceptions or [])
        self.model_info = list(model_info or [])
        self.attempts = list(attempts)
        self.retry_after = retry_after
        self.message = message or f"All {len(self.model_info)} available models failed"
        super().__init__(self.message)

    def __str__(self) -> str:
        lines = [self.message]
        lines += [f"  - {a.describe()}" for a in self.attempts]
        if not self.attempts:
            lines += [
                f"  - {name} ({prov}): {type(e).__name__}: {scrub(str(e))}"
                for name, prov, e in self.model_info
            ]
        return "\n".join(lines)

    def __reduce__(self) -> Any:
        return (_rebuild_router, (self.message, dict(self.__dict__)))


def _rebuild_router(message: str, state: dict[str, Any]) -> ModelRouterError:
    err = ModelRouterError.__new__(ModelRouterError)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err
