"""The one module that speaks HTTP (and the only one importing aiohttp and urllib3).

Async requests go through aiohttp: one ``ClientSession`` per event loop, created on first
use and closed when that loop shuts down (``asyncio.run`` and pytest-asyncio finalise async
generators, and a small one owns the session), so keep-alive connections are pooled and no
session outlives or leaks across loops. Sync requests go through urllib3 connection pools
(one per host, shared by every thread); urllib3 measured faster per call than
``httpx.Client`` against the same upstream (see BENCHMARKS.md).

Everything that goes wrong becomes a :mod:`msgflux.exceptions` error in one of two places:
:func:`status_error` for HTTP answers with an error status and :func:`transport_error` for
requests that got no answer. Both take the API key only to scrub it from what they report.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, NoReturn

import aiohttp
import orjson
import urllib3
import urllib3.exceptions
from multidict import CIMultiDict
from yarl import URL

from msgflux._time import as_clock
from msgflux.exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentPolicyError,
    ContextWindowExceededError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    ProviderError,
    RateLimitError,
    RequestTimeoutError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "Endpoint",
    "SSEDecoder",
    "aclose",
    "apost",
    "apost_stream",
    "close_pools",
    "encode_multipart",
    "error_class_for_status",
    "parse_retry_after",
    "post",
    "post_stream",
    "status_error",
    "transport_error",
    "transport_error_class",
]

DEFAULT_TIMEOUT = 600.0
"""Seconds an attempt may take when the caller gives no timeout (as the openai SDK)."""

CONNECTIONS_PER_LOOP = 256
"""aiohttp connection limit per event loop (all hosts together)."""

CONNECTIONS_PER_HOST = 64
"""urllib3 keep-alive connections kept per host (more are opened when needed)."""

_USER_AGENT = "msgflux-gateway"


# -- endpoints ---------------------------------------------------------------------------------
class Endpoint:
    """Where one kind of request goes, built once and reused by every call.

    ``headers`` hold the API key; neither they nor ``secret`` appear in the repr, and
    ``secret`` is scrubbed from every error this module raises for the endpoint.
    """

    __slots__ = (
        "_aheaders",
        "_path",
        "_pool",
        "_yurl",
        "headers",
        "model_id",
        "provider",
        "secret",
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
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {url!r}")
        self.url = url
        self.headers = {"User-Agent": _USER_AGENT, **headers}
        self.provider = provider
        self.model_id = model_id
        self.secret = secret or None
        self._yurl = URL(url)
        self._aheaders = CIMultiDict(self.headers)
        self._pool = _pool_for(url)
        self._path = self._yurl.raw_path_qs

    def __repr__(self) -> str:
        return f"Endpoint({self.url!r}, provider={self.provider!r}, model_id={self.model_id!r})"

    def with_content_type(self, content_type: str) -> Endpoint:
        """The same endpoint sending another Content-Type (multipart uploads)."""
        headers = {k: v for k, v in self.headers.items() if k.lower() != "content-type"}
        headers["Content-Type"] = content_type
        return Endpoint(
            self.url, headers, provider=self.provider, model_id=self.model_id, secret=self.secret
        )


# -- status codes ------------------------------------------------------------------------------
_BY_STATUS: dict[int, type[APIStatusError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: RequestTimeoutError,
    409: ConflictError,
    429: RateLimitError,
}

_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "maximum context",
    "context_window",
    "too many tokens",
    "prompt is too long",
    "input is too long",
    "reduce the length",
    "string_above_max_length",
)
_POLICY_MARKERS = (
    "content_policy",
    "content policy",
    "content_filter",
    "content filter",
    "content management policy",
    "safety system",
    "responsible ai",
    "moderation_blocked",
)


def error_class_for_status(status: int, body: Any = None) -> type[APIStatusError]:
    """The error class for a non-2xx HTTP status (``body`` refines 400/422).

    400/422 become :class:`ContextWindowExceededError` or :class:`ContentPolicyError` when the
    body says so (OpenAI, Azure, vLLM, Anthropic-style wording), else :class:`BadRequestError`;
    401/403/404/408/409/429 have their own classes; 5xx is :class:`InternalServerError`; any
    other status is a plain :class:`APIStatusError`.
    """
    if status in (400, 422):
        text = _body_text(body).lower()
        if any(marker in text for marker in _CONTEXT_MARKERS):
            return ContextWindowExceededError
        if any(marker in text for marker in _POLICY_MARKERS):
            return ContentPolicyError
        return BadRequestError
    cls = _BY_STATUS.get(status)
    if cls is not None:
        return cls
    if 500 <= status <= 599:
        return InternalServerError
    return APIStatusError


def status_error(
    status: int,
    raw: bytes | str | None,
    headers: Mapping[str, str] | None = None,
    *,
    provider: str | None = None,
    model_id: str | None = None,
    secret: str | None = None,
) -> APIStatusError:
    """The typed error for an HTTP answer with an error status (returned, not raised)."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else (raw or "")
    if secret and secret in text:
        text = text.replace(secret, "***")
    body: Any = text
    if text:
        try:
            body = orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    cls = error_class_for_status(status, body)
    detail = _error_message(body) or _reason(status)
    return cls(
        f"HTTP {status}: {detail}",
        provider=provider,
        model_id=model_id,
        status_code=status,
        body=body,
        request_id=_header(headers, "x-request-id"),
        retry_after=parse_retry_after(headers),
    )


def _body_text(body: Any) -> str:
    if body is None:
        return ""
    if isinstance(body, str):
        return body
    if isinstance(body, bytes):
        return body.decode("utf-8", "replace")
    try:
        return orjson.dumps(body).decode()
    except TypeError:
        return str(body)


def _error_message(body: Any) -> str:
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
    text = _body_text(body).strip()
    return text[:500] + ("..." if len(text) > 500 else "")


def _reason(status: int) -> str:
    return http.client.responses.get(status, "error")


def _header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup (aiohttp and urllib3 maps are; plain dicts are not)."""
    if not headers:
        return None
    value: str | None = headers.get(name)
    if value is None and type(headers) is dict:
        lowered = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lowered:
                return str(candidate)
    return value


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds the server asked us to wait: ``retry-after-ms``, else ``Retry-After``.

    ``Retry-After`` may be seconds (``"2"``, ``"1.5"``) or an HTTP date, measured from
    ``now`` (epoch seconds; default the real clock). Unparsable or negative values give None.
    """
    ms = _header(headers, "retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0 and value != float("inf"):
            return value
    raw = _header(headers, "retry-after")
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
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        return None
    return seconds


# -- transport exceptions ----------------------------------------------------------------------
_NOT_TIMEOUT: tuple[type[BaseException], ...] = (urllib3.exceptions.NewConnectionError,)
"""Connection refused/DNS failures that urllib3 files under ConnectTimeoutError for history."""

_TIMEOUTS: tuple[type[BaseException], ...] = (
    TimeoutError,
    asyncio.TimeoutError,
    urllib3.exceptions.TimeoutError,
    aiohttp.ServerTimeoutError,
)
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    aiohttp.ClientError,
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
    secret: str | None = None,
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
        text = str(cause)
        if secret and secret in text:
            text = text.replace(secret, "***")
        message = f"connection error: {type(cause).__name__}" + (f": {text}" if text else "")
    return cls(message, provider=provider, model_id=model_id)


def _raise_transport(exc: BaseException, ep: Endpoint, timeout: float | None) -> NoReturn:
    mapped = transport_error(
        exc, provider=ep.provider, model_id=ep.model_id, timeout=timeout, secret=ep.secret
    )
    if mapped is None:
        raise exc
    raise mapped from exc


def _raise_status(ep: Endpoint, status: int, raw: bytes, headers: Mapping[str, str]) -> NoReturn:
    raise status_error(
        status, raw, headers, provider=ep.provider, model_id=ep.model_id, secret=ep.secret
    )


def _invalid_json(ep: Endpoint, raw: bytes, exc: Exception) -> APIResponseValidationError:
    text = raw[:500].decode("utf-8", "replace")
    return APIResponseValidationError(
        f"the answer is not valid JSON: {exc}",
        provider=ep.provider,
        model_id=ep.model_id,
        body=text,
    )


# -- SSE ---------------------------------------------------------------------------------------
class SSEDecoder:
    """Incremental server-sent-events parser yielding each event's JSON ``data``.

    Feed it bytes as they arrive, in any split. Multi-line ``data:`` fields are joined with
    newlines, comments (``:``) and other fields are skipped, ``data: [DONE]`` sets
    :attr:`done` and ends decoding. ``\\n`` and ``\\r\\n`` line endings are accepted.
    """

    __slots__ = ("_buf", "_data", "done")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self.done = False

    def feed(self, chunk: bytes) -> list[Any]:
        """Parsed events completed by ``chunk`` (raises ``orjson.JSONDecodeError`` on bad JSON)."""
        if self.done:
            return []
        buf = self._buf + chunk if self._buf else chunk
        lines = buf.split(b"\n")
        self._buf = lines.pop()
        return self._lines(lines)

    def end(self) -> list[Any]:
        """Flush what the stream left without a final blank line."""
        if self.done:
            return []
        lines = [self._buf, b""] if self._buf else [b""]
        self._buf = b""
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[Any]:
        events: list[Any] = []
        data = self._data
        for line in lines:
            if line[-1:] == b"\r":
                line = line[:-1]
            if not line:
                if data:
                    payload = data[0] if len(data) == 1 else b"\n".join(data)
                    data.clear()
                    if payload == b"[DONE]":
                        self.done = True
                        return events
                    events.append(orjson.loads(payload))
            elif line[:5] == b"data:":
                value = line[5:]
                data.append(value[1:] if value[:1] == b" " else value)
        return events


# -- sync --------------------------------------------------------------------------------------
_pools: dict[tuple[str, str, int | None], urllib3.HTTPConnectionPool] = {}
_pools_lock = threading.Lock()
_sync_timeouts: dict[tuple[float, bool], urllib3.Timeout] = {}


def _pool_for(url: str) -> urllib3.HTTPConnectionPool:
    parsed = urllib3.util.parse_url(url)
    key = (parsed.scheme or "http", parsed.host or "", parsed.port)
    pool = _pools.get(key)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                pool = urllib3.connection_from_url(url, maxsize=CONNECTIONS_PER_HOST, block=False)
                _pools[key] = pool
    return pool


def close_pools() -> None:
    """Close every sync connection pool: idle sockets now, busy ones when they come back.

    Pools reopen on the next request. Tests call this after stopping a server so no socket
    to a dead port lingers.
    """
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


def _reset_pools_after_fork() -> None:
    """A child must not share the parent's sockets; give it fresh (lazily refilled) pools."""
    global _pools_lock
    _pools.clear()
    _pools_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_pools_after_fork)


def _sync_timeout(timeout: float | None, stream: bool) -> urllib3.Timeout:
    seconds = DEFAULT_TIMEOUT if timeout is None else timeout
    key = (seconds, stream)
    value = _sync_timeouts.get(key)
    if value is None:
        # urllib3 bounds connecting and each read; ``total`` additionally caps both together,
        # which is the whole attempt for a non-streamed answer.
        if stream:
            value = urllib3.Timeout(connect=seconds, read=seconds)
        else:
            value = urllib3.Timeout(total=seconds)
        _sync_timeouts[key] = value
    return value


def _live_pool(ep: Endpoint) -> urllib3.HTTPConnectionPool:
    pool = ep._pool
    if pool.pool is None:  # closed, e.g. replaced after a fork
        pool = ep._pool = _pool_for(ep.url)
    return pool


def _urlopen(
    ep: Endpoint, body: bytes, timeout: float | None, stream: bool
) -> urllib3.BaseHTTPResponse:
    try:
        return _live_pool(ep).urlopen(
            "POST",
            ep._path,
            body=body,
            headers=ep.headers,
            timeout=_sync_timeout(timeout, stream),
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=not stream,
        )
    except Exception as exc:
        _raise_transport(exc, ep, timeout)


def _decoded(
    ep: Endpoint, status: int, data: bytes, headers: Mapping[str, str], raw: bool
) -> tuple[Any, Mapping[str, str]]:
    """The answer of a whole (non-stream) response, or its typed error."""
    if status >= 300:
        _raise_status(ep, status, data, headers)
    if raw:
        return data, headers
    try:
        return orjson.loads(data), headers
    except orjson.JSONDecodeError as exc:
        raise _invalid_json(ep, data, exc) from None


def post(
    ep: Endpoint, body: bytes, timeout: float | None = None, *, raw: bool = False
) -> tuple[Any, Mapping[str, str]]:
    """POST ``body``; return the decoded JSON answer (or its bytes with ``raw``) and headers."""
    resp = _urlopen(ep, body, timeout, False)
    return _decoded(ep, resp.status, resp.data, resp.headers, raw)


def post_stream(
    ep: Endpoint, body: bytes, timeout: float | None = None
) -> tuple[Iterator[Any], Mapping[str, str]]:
    """POST and return an iterator over the SSE events, after checking the status.

    ``timeout`` bounds connecting and each wait for data. Closing the iterator early closes
    the connection; reading it to the end returns the connection to the pool.
    """
    resp = _urlopen(ep, body, timeout, True)
    if resp.status >= 300:
        try:
            data = resp.read()
        except Exception as exc:
            resp.close()
            _raise_transport(exc, ep, timeout)
        resp.release_conn()
        _raise_status(ep, resp.status, data, resp.headers)
    return _sse_events(ep, resp, timeout), resp.headers


def _sse_events(
    ep: Endpoint, resp: urllib3.BaseHTTPResponse, timeout: float | None
) -> Iterator[Any]:
    decoder = SSEDecoder()
    complete = False
    try:
        while True:
            try:
                chunk = resp.read1(65536)
            except Exception as exc:
                _raise_transport(exc, ep, timeout)
            if not chunk:
                complete = True
                events = decoder.end()
            else:
                try:
                    events = decoder.feed(chunk)
                except orjson.JSONDecodeError as exc:
                    raise _invalid_json(ep, chunk, exc) from None
            yield from events
            if complete:
                return
            if decoder.done:
                # Read the end of the HTTP body so the connection can be reused.
                try:
                    while resp.read1(65536):
                        pass
                except Exception:
                    return
                complete = True
                return
    finally:
        if complete:
            resp.release_conn()
        else:
            resp.close()
            resp.release_conn()


# -- async -------------------------------------------------------------------------------------
_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
_closers: dict[
    asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, AsyncGenerator[None, None]]
] = {}
_async_timeouts: dict[tuple[float, bool], aiohttp.ClientTimeout] = {}


async def _session() -> aiohttp.ClientSession:
    loop = asyncio.get_running_loop()
    session = _sessions.get(loop)
    if session is None or session.closed:
        session = await _open_session(loop)
    return session


async def _open_session(loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=CONNECTIONS_PER_LOOP, ttl_dns_cache=300)
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        skip_auto_headers=("User-Agent",),
    )
    closer = _close_at_shutdown(loop, session)
    _sessions[loop] = session
    _closers[loop] = (session, closer)
    await closer.__anext__()
    return session


async def _close_at_shutdown(
    loop: asyncio.AbstractEventLoop, session: aiohttp.ClientSession
) -> AsyncGenerator[None, None]:
    """Parked async generator: the loop's ``shutdown_asyncgens()`` resumes it to close."""
    try:
        yield
    finally:
        if _sessions.get(loop) is session:
            del _sessions[loop]
        entry = _closers.get(loop)
        if entry is not None and entry[0] is session:
            del _closers[loop]
        await session.close()


async def aclose() -> None:
    """Close the running loop's session now (it is reopened on the next request)."""
    loop = asyncio.get_running_loop()
    entry = _closers.get(loop)
    if entry is not None:
        await entry[1].aclose()
    session = _sessions.pop(loop, None)
    if session is not None:
        await session.close()


def _async_timeout(timeout: float | None, stream: bool) -> aiohttp.ClientTimeout:
    seconds = DEFAULT_TIMEOUT if timeout is None else timeout
    key = (seconds, stream)
    value = _async_timeouts.get(key)
    if value is None:
        if stream:
            value = aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=seconds)
        else:
            value = aiohttp.ClientTimeout(total=seconds)
        _async_timeouts[key] = value
    return value


async def apost(
    ep: Endpoint, body: bytes, timeout: float | None = None, *, raw: bool = False
) -> tuple[Any, Mapping[str, str]]:
    """Async form of :func:`post`."""
    session = _sessions.get(asyncio.get_running_loop()) or await _session()
    try:
        async with session.post(
            ep._yurl,
            data=body,
            headers=ep._aheaders,
            timeout=_async_timeout(timeout, False),
            allow_redirects=False,
        ) as resp:
            data = await resp.read()
            status = resp.status
            headers = resp.headers
    except Exception as exc:
        _raise_transport(exc, ep, timeout)
    return _decoded(ep, status, data, headers, raw)


async def apost_stream(
    ep: Endpoint, body: bytes, timeout: float | None = None
) -> tuple[AsyncIterator[Any], Mapping[str, str]]:
    """Async form of :func:`post_stream` (an async generator of the SSE events)."""
    session = await _session()
    try:
        resp = await session.post(
            ep._yurl,
            data=body,
            headers=ep._aheaders,
            timeout=_async_timeout(timeout, True),
            allow_redirects=False,
        )
    except Exception as exc:
        _raise_transport(exc, ep, timeout)
    if resp.status >= 300:
        try:
            data = await resp.read()
        except Exception as exc:
            resp.close()
            _raise_transport(exc, ep, timeout)
        finally:
            resp.release()
        _raise_status(ep, resp.status, data, resp.headers)
    return _asse_events(ep, resp, timeout), resp.headers


async def _asse_events(
    ep: Endpoint, resp: aiohttp.ClientResponse, timeout: float | None
) -> AsyncIterator[Any]:
    decoder = SSEDecoder()
    content = resp.content
    complete = False
    try:
        while True:
            try:
                chunk = await content.readany()
            except Exception as exc:
                _raise_transport(exc, ep, timeout)
            if not chunk:
                complete = True
                events = decoder.end()
            else:
                try:
                    events = decoder.feed(chunk)
                except orjson.JSONDecodeError as exc:
                    raise _invalid_json(ep, chunk, exc) from None
            for event in events:
                yield event
            if complete:
                return
            if decoder.done:
                try:
                    while await content.readany():
                        pass
                except Exception:
                    return
                complete = True
                return
    finally:
        if complete:
            resp.release()
        else:
            resp.close()


def encode_multipart(fields: list[tuple[str, Any]]) -> tuple[bytes, str]:
    """``multipart/form-data`` body and its Content-Type; file fields are
    ``(name, (filename, bytes, mime))``."""
    return urllib3.encode_multipart_formdata(fields)
