"""One request's record as the server sees it: who asked, which gateway, what came back.

The app opens an :class:`Exchange` for each HTTP request (:func:`opened`) and keeps it in a
context variable for the request's task, so every API format's endpoint code fills it in
through the same three calls without passing it around: :func:`identified` (the key, from
``authenticate``), :func:`admit` (the key's limits, before the gateway is called) and
:func:`answered` / :func:`failed` (the gateway's answer or error). The status and the time of
the first body byte come from the ASGI ``send`` the app wraps (:meth:`Exchange.wrap`). Once
the request is over, the metrics and the access log read the exchange; it holds no content.
"""

from __future__ import annotations

import contextvars
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from msgflux.models.gateway.raw import RawAnswer, RawStream
from msgflux.server.asgi import Message, Send

if TYPE_CHECKING:
    from msgflux.server.auth import Principal
    from msgflux.server.limits import Limiter, Ticket
    from msgflux.server.runtime import Route

__all__ = ["Exchange", "admit", "answered", "current", "failed", "identified", "opened", "settle"]

_CURRENT: contextvars.ContextVar[Exchange | None] = contextvars.ContextVar(
    "msgflux_exchange", default=None
)


class Exchange:
    """See the module docstring. Times: ``began`` epoch seconds, the rest ``perf_counter``."""

    __slots__ = (
        "answer",
        "began",
        "cached_only",
        "ended",
        "error",
        "first_body",
        "limiter",
        "method",
        "path",
        "principal",
        "rejected",
        "route",
        "started",
        "status",
        "ticket",
    )

    def __init__(self, method: str, path: str, limiter: Limiter | None) -> None:
        self.began = time.time()
        self.started = time.perf_counter()
        self.method = method
        self.path = path
        self.limiter = limiter
        self.principal: Principal | None = None
        self.route: Route | None = None
        self.answer: RawAnswer | RawStream | None = None
        self.error: BaseException | None = None
        self.rejected: str | None = None
        """Why the key's limits refused it (``rpm``, ``tpm``, ``max_concurrency``, ``budget``)."""
        self.cached_only: Any = None
        """The key's ``tpm``/``budget`` refusal, when it was admitted for a cached answer only
        (:mod:`.cache_headers`)."""
        self.ticket: Ticket | None = None
        self.status = 0
        """The response's status (0: none sent, the client left first)."""
        self.first_body: float | None = None
        self.ended = self.started
        """When the request was over (set by the app)."""

    def wrap(self, send: Send) -> Send:
        """``send`` that notes the status and when the first body bytes went out."""

        async def tracked(message: Message) -> None:
            if self.first_body is None:
                kind = message["type"]
                if kind == "http.response.start":
                    self.status = message["status"]
                elif kind == "http.response.body" and message.get("body"):
                    self.first_body = time.perf_counter()
            await send(message)

        return tracked

    @property
    def streamed(self) -> bool:
        return isinstance(self.answer, RawStream)

    @property
    def record(self) -> Any:
        """The gateway call's :class:`~msgflux.models.gateway.record.CallRecord`, if any."""
        answer = self.answer
        return answer.record if answer is not None else None


def opened(exchange: Exchange) -> contextvars.Token[Exchange | None]:
    """Make ``exchange`` the current request's (undo with ``_CURRENT.reset(token)``)."""
    return _CURRENT.set(exchange)


def closed(token: contextvars.Token[Exchange | None]) -> None:
    _CURRENT.reset(token)


def current() -> Exchange | None:
    return _CURRENT.get()


def identified(principal: Principal) -> None:
    exchange = _CURRENT.get()
    if exchange is not None:
        exchange.principal = principal


async def admit(route: Route) -> None:
    """Count this request against its key's limits; raises the 429 when they refuse it. Past
    its tpm or budget, a key is still admitted to a gateway with a response cache, for a
    cached answer only (``cached_only``)."""
    exchange = _CURRENT.get()
    if exchange is None:
        return
    exchange.route = route
    principal = exchange.principal
    limiter = exchange.limiter
    if principal is None or limiter is None or not principal.limits.active:
        return
    limits = principal.limits
    result = await limiter.admit(principal.name, limits)
    from msgflux.server.limits import BUDGET, TPM, Rejection

    if (
        isinstance(result, Rejection)
        and result.reason in (TPM, BUDGET)
        and route.gateway.cache is not None
    ):
        # A cached answer spends nothing: past its tpm or budget, the key may still have one
        # (its rpm and concurrency still count).
        spare = await limiter.admit(principal.name, replace(limits, tpm=None, budget=None))
        if not isinstance(spare, Rejection):
            exchange.cached_only = result
            result = spare
    if isinstance(result, Rejection):
        exchange.rejected = result.reason
        raise result.error()
    exchange.ticket = result


def answered(answer: RawAnswer | RawStream) -> None:
    exchange = _CURRENT.get()
    if exchange is not None:
        exchange.answer = answer


def failed(exc: BaseException) -> None:
    exchange = _CURRENT.get()
    if exchange is not None:
        exchange.error = exc


def settle() -> None:
    """Settle the request's admission (its answer's tokens and cost; a stream once it ended).
    Call it when the request is over, whatever happened; a second call does nothing."""
    exchange = _CURRENT.get()
    if exchange is None or exchange.ticket is None:
        return
    record = exchange.record
    tokens = 0
    cost = None
    if record is not None:
        tokens = (record.input_tokens or 0) + (record.output_tokens or 0)
        cost = record.cost
    exchange.ticket.settle(tokens, cost)
