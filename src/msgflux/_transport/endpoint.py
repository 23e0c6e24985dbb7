"""Where a request goes and what bounds it: built once per model and URL, reused by every call.

Also the checks both clients share (they read bytes differently, but judge them the same way):
an error status becomes its typed error, a stream request must be answered in its framing (SSE,
or AWS's event stream), and an over-large or undecodable body becomes a typed validation error.

An endpoint whose requests are signed one by one (AWS SigV4 signs the date and the body's
hash) carries a :data:`Sign` hook: both clients call it for every request, with the bytes they
are about to send, and send the headers it returns (:meth:`Endpoint.head_for`,
:meth:`Endpoint.headers_for`). Every other endpoint sends the head built once.
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import urllib3

from msgflux import _secrets
from msgflux._transport.body import (
    ACCEPT_ENCODING,
    DEFAULT_MAX_RESPONSE_BYTES,
    BodyTooLarge,
    UnsupportedEncoding,
)
from msgflux._transport.errors import Classify, status_error, transport_error
from msgflux._transport.eventstream import FrameError
from msgflux._transport.sse import DEFAULT_MAX_EVENT_BYTES, EventTooLarge
from msgflux._transport.wire import origin_of, request_head
from msgflux.exceptions import (
    APIResponseValidationError,
    APITimeoutError,
    ProviderError,
    ResponseTooLargeError,
)

__all__ = ["DEFAULT_TIMEOUT", "MAX_ERROR_BODY", "Endpoint", "Limits", "Sign", "StreamTimeouts"]

DEFAULT_TIMEOUT = 600.0
"""Seconds an attempt may take when the caller gives no timeout (as the openai SDK)."""

MAX_ERROR_BODY = 1 << 20
"""An error answer is read up to 1 MiB; the message is in the first few hundred bytes."""

_USER_AGENT = "msgflux-gateway"

Sign = Callable[["Endpoint", bytes], Mapping[str, str]]
"""A per-request signer: ``(endpoint, body) -> headers`` to send with this request (they are
added to the endpoint's, and replace any of the same name)."""


def _positive(name: str, value: Any, *, integer: bool = False) -> Any:
    kind = "an int" if integer else "a number"
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int if integer else (int, float))):
        raise TypeError(f"{name} must be {kind} > 0 or None, got {value!r}")
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be {kind} > 0 (finite) or None, got {value!r}")
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """Byte caps on what an upstream may send back (decompressed size counted).

    >>> Limits(max_response_bytes=8 << 20, max_event_bytes=256 << 10)
    """

    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    """A whole answer, and a whole stream."""
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    """One SSE event (and one line of it)."""

    def __post_init__(self) -> None:
        _positive("max_response_bytes", self.max_response_bytes, integer=True)
        _positive("max_event_bytes", self.max_event_bytes, integer=True)


DEFAULT_LIMITS = Limits()


@dataclasses.dataclass(frozen=True, slots=True)
class StreamTimeouts:
    """The time bounds of one streamed attempt, in seconds from its start.

    ``first_chunk``: until the first *content* chunk (keep-alive comments, empty and role-only
    deltas do not count; the provider adapter says what content is). ``idle``: the longest gap
    between content chunks after that. ``total``: the whole stream (the gateway's deadline).
    """

    first_chunk: float = DEFAULT_TIMEOUT
    idle: float = DEFAULT_TIMEOUT
    total: float | None = None

    @classmethod
    def of(
        cls,
        timeout: float | None,
        first_chunk: float | None = None,
        idle: float | None = None,
        total: float | None = None,
    ) -> StreamTimeouts:
        """``timeout`` is the default of the two gaps; ``total`` caps everything."""
        base = DEFAULT_TIMEOUT if timeout is None else timeout
        first = base if first_chunk is None else first_chunk
        gap = base if idle is None else idle
        if total is not None:
            first = min(first, total)
        return cls(first, gap, total)


_OPENAI_ROUTE = re.compile(
    r"/(chat/completions|completions|embeddings|responses|moderations|audio/\w+|images/\w+)$"
)
_VERSION_SEGMENT = re.compile(r"/v\d[^/]*/")


def missing_version_hint(path: str) -> str | None:
    """For a 404 from an OpenAI-style route with no version in its path (``/chat/completions``
    where the server serves ``/v1/chat/completions``): the likely mistake, in words."""
    route = path.split("?", 1)[0]
    if not _OPENAI_ROUTE.search(route) or _VERSION_SEGMENT.search(route) or "/openai/" in route:
        return None
    return f"the request went to {route}: is base_url missing /v1?"


class Endpoint:
    """Where one kind of request goes, built once and reused by every call.

    ``headers`` hold the API key: neither they nor the key appear in the repr, and the key is
    registered with :mod:`msgflux._secrets`, so it is scrubbed from every error and log.
    ``classify`` refines error statuses with the provider's own wording; ``sign``, when set,
    signs each request (see the module docstring).
    """

    __slots__ = (
        "_head",
        "_host",
        "_origin",
        "_path",
        "_pool",
        "classify",
        "headers",
        "limits",
        "model_id",
        "provider",
        "sign",
        "url",
    )

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str],
        *,
        provider: str | None = None,
        model_id: str | None = None,
        secret: str | None = None,
        limits: Limits = DEFAULT_LIMITS,
        classify: Classify | None = None,
        sign: Sign | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        _secrets.register(secret)
        self.url = url
        self.headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": ACCEPT_ENCODING, **headers}
        self.provider = provider
        self.model_id = model_id
        self.limits = limits
        self.classify = classify
        self.sign = sign
        self._origin, self._path, self._host = origin_of(url)
        self._head = request_head(self._path, self._host, self.headers)
        self._pool: urllib3.HTTPConnectionPool | None = None

    def __repr__(self) -> str:
        return f"Endpoint({self.url!r}, provider={self.provider!r}, model_id={self.model_id!r})"

    def _copy(self) -> Endpoint:
        ep = Endpoint.__new__(Endpoint)
        for name in Endpoint.__slots__:
            setattr(ep, name, getattr(self, name))
        return ep

    def with_headers(self, extra: Mapping[str, str]) -> Endpoint:
        """The same endpoint sending other or more headers (multipart uploads, per-call
        ``extra_headers``); header names match case-insensitively."""
        lowered = {k.lower() for k in extra}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in lowered}
        headers.update(extra)
        ep = self._copy()
        ep.headers = headers
        ep._head = request_head(self._path, self._host, headers)
        return ep

    def with_limits(self, limits: Limits) -> Endpoint:
        """The same endpoint with other byte caps (a gateway's, for one call)."""
        ep = self._copy()
        ep.limits = limits
        return ep

    def headers_for(self, body: bytes) -> Mapping[str, str]:
        """The headers of a request sending ``body`` (the sync client's): the endpoint's, plus
        the signer's for this request when there is one."""
        sign = self.sign
        if sign is None:
            return self.headers
        signed = sign(self, body)
        lowered = {k.lower() for k in signed}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in lowered}
        headers.update(signed)
        return headers

    def head_for(self, body: bytes) -> bytes:
        """:meth:`headers_for` as the async client's request head (built once, unless signed)."""
        if self.sign is None:
            return self._head
        return request_head(self._path, self._host, self.headers_for(body))

    # -- judgements shared by both clients ---------------------------------------------------
    def invalid(self, what: str, body: Any = None) -> APIResponseValidationError:
        if isinstance(body, (bytes, bytearray)):
            body = bytes(body[:500]).decode("utf-8", "replace")
        return APIResponseValidationError(
            what, provider=self.provider, model_id=self.model_id, body=body
        )

    def too_large(self, what: str) -> ResponseTooLargeError:
        return ResponseTooLargeError(what, provider=self.provider, model_id=self.model_id)

    def timed_out(self, what: str) -> APITimeoutError:
        return APITimeoutError(what, provider=self.provider, model_id=self.model_id)

    def raise_status(self, status: int, data: bytes, headers: Mapping[str, str]) -> NoReturn:
        raise status_error(
            status,
            data,
            headers,
            provider=self.provider,
            model_id=self.model_id,
            classify=self.classify,
            hint=missing_version_hint(self._path) if status == 404 else None,
        )

    def failure(self, exc: BaseException, cut: bool, why: str) -> BaseException:
        """What to raise for ``exc``: a timeout when our own bound cut the request (``cut``),
        else the typed error it maps to (``exc`` itself when it is not about the transport)."""
        if cut:
            return self.timed_out(why)
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, (BodyTooLarge, EventTooLarge)):
            return self.too_large(str(exc))
        if isinstance(exc, (UnsupportedEncoding, zlib.error, FrameError)):
            return self.invalid(f"the answer cannot be decoded: {exc}")
        mapped = transport_error(exc, provider=self.provider, model_id=self.model_id)
        if isinstance(mapped, APITimeoutError):
            return self.timed_out(why)
        return mapped or exc

    def check_event_stream(
        self, headers: Mapping[str, str], sample: bytes, media_type: str = "text/event-stream"
    ) -> None:
        """A stream request answered 2xx must be in its framing's ``media_type`` (SSE unless
        said otherwise); anything else is a validation error (a broken or misconfigured
        server, not a transient failure)."""
        ctype = headers.get("Content-Type") or headers.get("content-type") or ""
        if not ctype.lower().startswith(media_type):
            raise self.invalid(
                f"a stream was requested but the answer is {ctype or 'untyped'}, not {media_type}",
                sample,
            )
