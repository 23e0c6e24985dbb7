"""The async client: aiohttp, one ``ClientSession`` per event loop, bounded by loop timers.

The session is created on first use and closed when its loop shuts down (``asyncio.run`` and
pytest-asyncio finalise async generators, and a small one owns the session), so keep-alive
connections are pooled and no session outlives or leaks across loops. Bodies are read raw
(``auto_decompress=False``) and inflated by :mod:`.body` within their byte budget.

A whole answer is bounded by aiohttp's total timeout. A stream is bounded by one loop timer
per stream: it fires at the stream's current deadline (first-chunk bound, then idle bound
after each content chunk, never past the total bound) and closes the connection, which wakes
the pending read; the read then fails as :class:`APITimeoutError`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Mapping
from typing import TypeVar

import aiohttp

from msgflux._transport.body import SLICE, BodyTooLarge, Inflater
from msgflux._transport.endpoint import (
    DEFAULT_TIMEOUT,
    MAX_ERROR_BODY,
    Endpoint,
    StreamTimeouts,
)
from msgflux._transport.sse import Event, SSEDecoder
from msgflux._transport.sync import Response

__all__ = ["CONNECTIONS_PER_LOOP", "AsyncEventStream", "aclose", "apost", "apost_stream"]

CONNECTIONS_PER_LOOP = 256
"""aiohttp connection limit per event loop (all hosts together)."""

_DRAIN_SECONDS = 0.1
T = TypeVar("T")

_sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
_closers: dict[
    asyncio.AbstractEventLoop, tuple[aiohttp.ClientSession, AsyncGenerator[None, None]]
] = {}
_timeouts: dict[float, aiohttp.ClientTimeout] = {}
_stream_timeouts: dict[float, aiohttp.ClientTimeout] = {}


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
        skip_auto_headers=("User-Agent", "Accept-Encoding"),
        auto_decompress=False,
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


def _total_timeout(seconds: float) -> aiohttp.ClientTimeout:
    value = _timeouts.get(seconds)
    if value is None:
        value = _timeouts[seconds] = aiohttp.ClientTimeout(total=seconds)
    return value


def _connect_timeout(seconds: float) -> aiohttp.ClientTimeout:
    value = _stream_timeouts.get(seconds)
    if value is None:
        value = _stream_timeouts[seconds] = aiohttp.ClientTimeout(total=None, sock_connect=seconds)
    return value


if sys.version_info >= (3, 11):

    async def _within(aw: Awaitable[T], seconds: float) -> T:
        async with asyncio.timeout(seconds):
            return await aw

else:  # pragma: no cover - Python 3.10

    async def _within(aw: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(aw, seconds)


async def _read_all(resp: aiohttp.ClientResponse, limit: int, truncate: bool = False) -> bytes:
    headers = resp.headers
    encoding = headers.get("Content-Encoding")
    length = resp.content_length
    if encoding is None and length is not None and length <= limit:
        # A plain body whose size is announced and within the cap: read it in one go (aiohttp
        # stops at Content-Length, so it cannot grow past what was checked here).
        return await resp.read()
    inflater = Inflater(encoding, limit)
    out = bytearray()
    content = resp.content
    try:
        while raw := await content.readany():
            for piece in inflater.feed(raw):
                out += piece
        out += inflater.flush()
    except BodyTooLarge:
        if not truncate:
            raise
    return bytes(out[:limit])


async def apost(ep: Endpoint, body: bytes, timeout: float | None = None) -> Response:
    """Async form of :func:`msgflux._transport.sync.post`."""
    seconds = DEFAULT_TIMEOUT if timeout is None else timeout
    session = _sessions.get(asyncio.get_running_loop()) or await _session()
    try:
        async with session.post(
            ep._yurl,
            data=body,
            headers=ep._aheaders,
            timeout=_total_timeout(seconds),
            allow_redirects=False,
        ) as resp:
            status = resp.status
            if status >= 300:
                data = await _read_all(resp, MAX_ERROR_BODY, truncate=True)
            else:
                data = await _read_all(resp, ep.limits.max_response_bytes)
            headers = resp.headers
    except Exception as exc:
        raise ep.failure(exc, False, f"timed out after {seconds:g}s") from exc
    if status >= 300:
        ep.raise_status(status, data, headers)
    return Response(status, headers, data)


class AsyncEventStream:
    """The SSE events of one streamed answer, read with ``async for``; see
    :class:`msgflux._transport.sync.EventStream` for :meth:`content`/:meth:`afinish`."""

    __slots__ = (
        "_at",
        "_closed",
        "_decoder",
        "_end",
        "_ep",
        "_handle",
        "_idle",
        "_inflater",
        "_loop",
        "_resp",
        "_scheduled",
        "_why",
        "fired",
        "headers",
    )

    def __init__(
        self,
        ep: Endpoint,
        resp: aiohttp.ClientResponse,
        timeouts: StreamTimeouts,
        started: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._ep = ep
        self._resp = resp
        self._loop = loop
        self._idle = timeouts.idle
        self._end = float("inf") if timeouts.total is None else started + timeouts.total
        self._at = started + timeouts.first_chunk
        self._why = f"no content within first_chunk_timeout={timeouts.first_chunk:g}s"
        self._closed = False
        self.fired = False
        self.headers: Mapping[str, str] = resp.headers
        limits = ep.limits
        self._inflater = Inflater(resp.headers.get("Content-Encoding"), limits.max_response_bytes)
        self._decoder = SSEDecoder(limits.max_event_bytes)
        self._scheduled = self._at
        self._handle: asyncio.TimerHandle | None = loop.call_at(self._at, self._check)

    def _check(self) -> None:
        self._handle = None
        if self._closed:
            return
        if self._loop.time() >= self._at:
            self.fired = True
            self._resp.close()  # wakes the pending read
        else:
            self._schedule()

    def _schedule(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._scheduled = self._at
        self._handle = self._loop.call_at(self._at, self._check)

    def _move(self, at: float) -> None:
        self._at = at
        if at < self._scheduled or self._handle is None:
            self._schedule()

    def content(self) -> None:
        idle_at = self._loop.time() + self._idle
        if idle_at < self._end:
            self._why = f"no content for idle_timeout={self._idle:g}s"
            self._move(idle_at)
        else:
            self._why = "the stream did not end before the deadline"
            self._move(self._end)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        try:
            while (batch := await self.read()) is not None:
                for event in batch:
                    yield event
        except GeneratorExit:
            self.close()
            raise

    async def read(self) -> list[Event] | None:
        """The events completed by the upstream's next read (often one, possibly none), or
        None once the stream is over: one await per read, whatever the number of events."""
        if self._closed:
            return None
        try:
            raw = await self._resp.content.readany()
            if not raw:
                if self.fired:
                    raise self._ep.timed_out(self._why)
                decoder = self._decoder
                events = decoder.feed(self._inflater.flush()) + decoder.end()
                self._finished(clean=True)
                return events or None
            decoder = self._decoder
            pieces = self._inflater.feed(raw)
            events = decoder.feed(next(pieces, b""))
            for piece in pieces:
                events += decoder.feed(piece)
            return events
        except Exception as exc:
            self.close()
            raise self._ep.failure(exc, self.fired, self._why) from exc

    async def afinish(self) -> None:
        """The stream ended logically: drain the HTTP body briefly for reuse, else close."""
        if self._closed:
            return
        self._move(min(self._at, self._loop.time() + _DRAIN_SECONDS))
        try:
            drained = 0
            while raw := await self._resp.content.readany():
                drained += len(raw)
                if drained > SLICE:
                    raise OSError("too much data after the end of the stream")
        except Exception:
            self.close()
            return
        self._finished(clean=not self.fired)

    def close(self) -> None:
        if not self._closed:
            self._finished(clean=False)

    def _finished(self, clean: bool) -> None:
        self._closed = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if clean:
            self._resp.release()
        else:
            self._resp.close()


async def apost_stream(ep: Endpoint, body: bytes, timeouts: StreamTimeouts) -> AsyncEventStream:
    """Async form of :func:`msgflux._transport.sync.post_stream`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    session = _sessions.get(loop) or await _session()
    why = f"no content within first_chunk_timeout={timeouts.first_chunk:g}s"
    resp: aiohttp.ClientResponse | None = None
    try:
        resp = await _within(
            session.post(
                ep._yurl,
                data=body,
                headers=ep._aheaders,
                timeout=_connect_timeout(timeouts.first_chunk),
                allow_redirects=False,
            ),
            timeouts.first_chunk,
        )
        left = started + timeouts.first_chunk - loop.time()
        if resp.status >= 300:
            data = await _within(_read_all(resp, MAX_ERROR_BODY, truncate=True), max(left, 0))
            resp.release()
            ep.raise_status(resp.status, data, resp.headers)
        ctype = resp.headers.get("Content-Type") or ""
        if not ctype.lower().startswith("text/event-stream"):
            sample = await _within(_read_all(resp, 500, truncate=True), max(left, 0))
            ep.check_event_stream(resp.headers, sample)
        return AsyncEventStream(ep, resp, timeouts, started, loop)
    except Exception as exc:
        if resp is not None:
            resp.close()
        cut = isinstance(exc, TimeoutError)
        raise ep.failure(exc, cut, why) from exc
