"""Call wrappers: behaviour around a whole gateway call, which may answer without calling it.

Hooks observe a call; a wrapper can decide. A :class:`Wrapper` gets the :class:`Call` (the
request, the path it came by, its per-call options) and the next handler; it may change the
call, answer it itself (a cache hit, a guard refusing it), or call the next handler and look
at (or replace) what comes back. The gateway composes its ``wrappers=`` outermost first, the
same way for ``gateway(...)`` / ``acall`` (msgflux's path) and ``complete`` / ``acomplete``
(the raw path), sync and async::

    class Refuse(Wrapper):
        def wrap(self, call, next):
            if "forbidden" in str(call.request.body):
                raise ValueError("messages: this gateway does not take that")
            return next(call)

    gateway = ModelGateway([...], wrappers=[Refuse()])

A wrapper that answers itself builds the answer of the call's path with :meth:`Call.answer`
(a canonical chat completion in; a :class:`~msgflux.models.gateway.raw.RawAnswer` in the
request's API family, or msgflux's ``ModelResponse``, out). A wrapper takes per-call options
by naming them in :attr:`Wrapper.options` (``gateway(messages=..., cache=False)``); the
gateway hands them to the wrappers, never to a deployment.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from msgflux.models.gateway.gateway import ModelGateway
    from msgflux.models.request import Request

__all__ = ["MSGFLUX", "RAW", "AsyncHandler", "Call", "Handler", "Wrapper", "achain", "chain"]

MSGFLUX = "msgflux"
"""A ``gateway(...)`` / ``acall`` call: msgflux arguments in, msgflux's answer out."""
RAW = "raw"
"""A ``complete`` / ``acomplete`` call: a request in, the answer in its API family out."""

Handler = Callable[["Call"], Any]
AsyncHandler = Callable[["Call"], Awaitable[Any]]


class Call:
    """One gateway call as its wrappers see it.

    ``path`` is :data:`MSGFLUX` or :data:`RAW`; ``options`` the per-call options the
    wrappers declared (``cache=False``); ``model_preference`` the caller's; ``meta`` what the
    wrappers say about the call in its answer's ``metadata.gateway``. :attr:`request`
    is the call's request: for the raw path the one given, for msgflux's path the canonical
    request its arguments make (built when first read; a user-written model's gateway may
    have none: None).
    """

    __slots__ = (
        "_built",
        "_request",
        "gateway",
        "is_async",
        "kwargs",
        "meta",
        "model_preference",
        "options",
        "path",
        "started",
    )

    def __init__(
        self,
        gateway: ModelGateway,
        path: str,
        *,
        request: Request | None = None,
        kwargs: dict[str, Any] | None = None,
        model_preference: str | None = None,
        options: Mapping[str, Any] | None = None,
        is_async: bool = False,
    ) -> None:
        self.gateway = gateway
        self.is_async = is_async
        """Made by ``acall``/``acomplete`` (its answer's stream is read with ``async for``)."""
        self.path = path
        self._request = request
        self._built = request is not None
        self.kwargs = kwargs or {}
        """msgflux's arguments of a :data:`MSGFLUX` call (empty for the raw path)."""
        self.model_preference = model_preference
        self.options: dict[str, Any] = dict(options or {})
        self.meta: dict[str, Any] = {}
        """What the wrappers add to the answer's ``metadata.gateway`` and its call record
        (the cache's ``cache``, ``cache_age`` and ``cost_saved``)."""
        self.started = gateway._clock.perf()
        """When the call began (perf seconds of the gateway's clock)."""

    @property
    def request(self) -> Request | None:
        if not self._built:
            self._built = True
            self._request = self.gateway._canonical_of(self.kwargs)
        return self._request

    @request.setter
    def request(self, value: Request) -> None:
        self._request = value
        self._built = True

    @property
    def stream(self) -> bool:
        if self.path == RAW:
            request = self._request
            return bool(request is not None and request.stream)
        return self.kwargs.get("stream") is True

    def answer(self, completion: dict[str, Any], deployment: str) -> Any:
        """The answer of this call's path for a canonical chat ``completion`` that
        ``deployment`` gave (or a wrapper made): for the raw path a
        :class:`~msgflux.models.gateway.raw.RawAnswer` in the request's family, for msgflux's
        path a ``ModelResponse`` (its ``metadata.gateway`` says who answered, with no
        attempt)."""
        return self.gateway._answer_of(self, completion, deployment)


class Wrapper:
    """Surrounds a whole gateway call (see the module docstring). The defaults pass the call
    on unchanged; override :meth:`wrap` (sync calls) and :meth:`awrap` (async calls)."""

    options: ClassVar[frozenset[str]] = frozenset()
    """The per-call keyword options this wrapper takes (``gateway(..., cache=False)``)."""

    def wrap(self, call: Call, next: Handler) -> Any:
        return next(call)

    async def awrap(self, call: Call, next: AsyncHandler) -> Any:
        return await next(call)


def check_wrappers(value: Any) -> tuple[Wrapper, ...]:
    """``wrappers=`` as a tuple (TypeError naming what is not a :class:`Wrapper`)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, Wrapper) else value
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise TypeError(f"wrappers must be a Wrapper or a list of them, got {value!r}")
    for item in items:
        if not isinstance(item, Wrapper):
            raise TypeError(f"wrappers must hold Wrapper instances, got {item!r}")
    return tuple(items)


def chain(wrappers: Sequence[Wrapper], core: Handler) -> Handler:
    """``core`` inside ``wrappers`` (the first outermost)."""
    handler = core
    for wrapper in reversed(wrappers):
        handler = functools.partial(wrapper.wrap, next=handler)
    return handler


def achain(wrappers: Sequence[Wrapper], core: AsyncHandler) -> AsyncHandler:
    """Async form of :func:`chain`."""
    handler = core
    for wrapper in reversed(wrappers):
        handler = functools.partial(wrapper.awrap, next=handler)
    return handler
