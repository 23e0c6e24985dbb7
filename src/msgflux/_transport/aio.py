"""The async client: HTTP/1.1 over asyncio (:mod:`.wire`), a keep-alive pool per event loop.

Bodies arrive raw and are inflated by :mod:`.body` within their byte budget. A whole answer is
bounded by one timeout around it. A stream is bounded by one loop timer per stream: it fires at
the stream's current deadline (first-chunk bound, then idle bound after each content chunk,
never past the total bound) and closes the connection, which wakes the pending read; the read
then fails as :class:`APITimeoutError`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import TypeVar

from msgflux._transport import wire
from msgflux._transport.body import SLICE, BodyTooLarge, Inflater
from msgflux._transport.endpoint import (
    DEFAULT_TIMEOUT,
    MAX_ERROR_BODY,
    Endpoint,
    StreamTimeouts,
)
from msgflux._transport.framing import SSE, Decoder, Framing
from msgflux._transport.sse import Event
from msgflux._transport.sync import Response

__all__ = ["AsyncEventStream", "aclose", "apost", "apost_stream"]

_DRAIN_SECONDS = 0.1
T = TypeVar("T")


async def aclose() -> None:
    """Close the running loop's connections now (new ones open on the next request)."""
    await wire.close_pool()


if sys.version_info >= (3, 11):

    async def _within(aw: Awaitable[T], seconds: float) -> T:
        async with asyncio.timeout(seconds):
            return await aw

else:  # pragma: no cover - Python 3.10

    async def _within(aw: Awaitable[T], seconds: float) -> T:
        return await asyncio.wait_for(aw, seconds)


async def _read_all(answer: wire.Answer, limit: int, truncate: bool = False) -> bytes:
    """The whole body, decoded, at most ``limit`` bytes (more raises :class:`BodyTooLarge`,
    or with ``truncate`` is cut there)."""
    inflater = Inflater(answer.headers.get("content-encoding"), limit)
    parts: list[bytes] = []
    try:
        while raw := await answer.readany():
            parts.extend(inflater.feed(raw))
        parts.append(inflater.flush())
    except BodyTooLarge:
        if not truncate:
            raise
        return b"".join(parts)[:limit]
    return b"".join(parts)


async def _exchange(ep: Endpoint, body: bytes) -> tuple[int, Mapping[str, str], bytes]:
    answer = await wire.request(ep._origin, ep.head_for(body), body)
    try:
        status = answer.status
        if status >= 300:
            data = await _read_all(answer, MAX_ERROR_BODY, truncate=True)
        else:
            data = await _read_all(answer, ep.limits.max_response_bytes)
    except BaseException:
        answer.close()
        raise
    answer.release()
    return status, answer.headers, data


async def apost(ep: Endpoint, body: bytes, timeout: float | None = None) -> Response:
    """Async form of :func:`msgflux._transport.sync.post`."""
    seconds = DEFAULT_TIMEOUT if timeout is None else timeout
    try:
        status, headers, data = await _within(_exchange(ep, body), seconds)
    except Exception as exc:
        raise ep.failure(exc, False, f"timed out after {seconds:g}s") from exc
    if status >= 300:
        ep.raise_status(status, data, headers)
    return Response(status, headers, data)


class AsyncEventStream:
    """The events of one streamed answer, read with ``async for``; see
    :class:`msgflux._transport.sync.EventStream` for :meth:`content`/:meth:`afinish`."""

    __slots__ = (
        "_at",
        "_closed",
        "_decoder",
        "_end",
        "_ep",
        "_gap",
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
        resp: wire.Answer,
        timeouts: StreamTimeouts,
        started: float,
        loop: asyncio.AbstractEventLoop,
        decoder: Decoder | None = None,
    ) -> None:
        self._ep = ep
        self._resp = resp
        self._loop = loop
        self._idle = timeouts.idle
        self._end = float("inf") if timeouts.total is None else started + timeouts.total
        self._at = started + timeouts.first_chunk
        self._why = f"no content within first_chunk_timeout={timeouts.first_chunk:g}s"
        self._gap = False
        self._closed = False
        self.fired = False
        self.headers: Mapping[str, str] = resp.headers
        limits = ep.limits
        self._inflater = Inflater(resp.headers.get("content-encoding"), limits.max_response_bytes)
        self._decoder = decoder or SSE.decoder(limits.max_event_bytes)
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
            if not self._gap:  # the first content: from now on, the idle bound
                self._gap = True
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
            raw = await self._resp.readany()
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
            while raw := await self._resp.readany():
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


async def apost_stream(
    ep: Endpoint, body: bytes, timeouts: StreamTimeouts, framing: Framing = SSE
) -> AsyncEventStream:
    """Async form of :func:`msgflux._transport.sync.post_stream`."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    why = f"no content within first_chunk_timeout={timeouts.first_chunk:g}s"
    resp: wire.Answer | None = None
    try:
        head = ep.head_for(body)
        resp = await _within(wire.request(ep._origin, head, body), timeouts.first_chunk)
        left = started + timeouts.first_chunk - loop.time()
        if resp.status >= 300:
            data = await _within(_read_all(resp, MAX_ERROR_BODY, truncate=True), max(left, 0))
            resp.release()
            ep.raise_status(resp.status, data, resp.headers)
        ctype = resp.headers.get("content-type") or ""
        if not ctype.lower().startswith(framing.media_type):
            sample = await _within(_read_all(resp, 500, truncate=True), max(left, 0))
            ep.check_event_stream(resp.headers, sample, framing.media_type)
        decoder = framing.decoder(ep.limits.max_event_bytes)
        return AsyncEventStream(ep, resp, timeouts, started, loop, decoder)
    except Exception as exc:
        if resp is not None:
            resp.close()
        cut = isinstance(exc, TimeoutError)
        raise ep.failure(exc, cut, why) from exc
