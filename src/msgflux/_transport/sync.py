"""The sync client: urllib3 connection pools, bounded by a watchdog.

urllib3 (measured faster per call than ``httpx.Client``, see BENCHMARKS.md) bounds connecting
and each socket read, but not a whole answer: an upstream sending one byte every 0.2 s never
trips a 0.5 s read timeout. So every request here has a :class:`Watch` with a deadline, and
one watchdog thread shuts down the socket of any request still running past its deadline; the
blocked read then returns at once and the request fails as :class:`APITimeoutError`. A
stream's watch deadline moves: first to the first-content-chunk bound, then after each
content chunk to the idle bound (never past the stream's total bound).

The watchdog only holds the requests in flight (added before, removed after each request),
so its memory is bounded by concurrency, not by traffic.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import urllib3
import urllib3.connection
import urllib3.exceptions

from msgflux._time import monotonic
from msgflux._transport.body import SLICE, BodyTooLarge, Inflater
from msgflux._transport.endpoint import (
    DEFAULT_TIMEOUT,
    MAX_ERROR_BODY,
    Endpoint,
    StreamTimeouts,
)
from msgflux._transport.framing import SSE, Decoder, Framing
from msgflux._transport.sse import Event

__all__ = ["CONNECTIONS_PER_HOST", "EventStream", "Response", "close_pools", "post", "post_stream"]

CONNECTIONS_PER_HOST = 64
"""urllib3 keep-alive connections kept per host (more are opened when needed)."""

_DRAIN_SECONDS = 0.1
"""After a stream's logical end, how long we wait for the HTTP body's end (to reuse the
connection) before closing it instead."""


# -- the watchdog -------------------------------------------------------------------------------
class Watch:
    """One request's deadline (``at``, monotonic seconds) and the socket it may shut."""

    __slots__ = ("at", "fired", "sock")

    def __init__(self, at: float) -> None:
        self.at = at
        self.sock: Any = None
        self.fired = False

    def attach(self, sock: Any) -> None:
        self.sock = sock
        if self.fired:  # the deadline passed while connecting
            self._shut()

    def fire(self) -> None:
        self.fired = True
        self._shut()

    def _shut(self) -> None:
        sock = self.sock
        if sock is not None:
            try:
                # The plain socket method, also on an SSLSocket: shutting the descriptor down
                # wakes the reader without touching the TLS object it is using. The socket
                # itself is kept, not the connection: http.client forgets the connection's
                # socket when the answer says it will close, while the answer still reads it.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass


class _Watchdog:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active: set[Watch] = set()
        self._next = float("inf")
        self._thread: threading.Thread | None = None

    def add(self, watch: Watch) -> None:
        with self._cond:
            self._active.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="msgflux-http-watchdog", daemon=True
                )
                self._thread.start()
            if watch.at < self._next:
                self._cond.notify()

    def moved(self, watch: Watch) -> None:
        """``watch.at`` moved earlier than the watchdog may be waiting for: wake it."""
        if watch.at < self._next:
            with self._cond:
                self._cond.notify()

    def remove(self, watch: Watch) -> None:
        with self._cond:
            self._active.discard(watch)

    def _run(self) -> None:
        cond = self._cond
        with cond:
            while True:
                if not self._active:
                    self._next = float("inf")
                    cond.wait()
                    continue
                now = monotonic()
                nearest = float("inf")
                for watch in list(self._active):
                    if watch.at <= now:
                        self._active.discard(watch)
                        watch.fire()
                    elif watch.at < nearest:
                        nearest = watch.at
                self._next = nearest
                if nearest != float("inf"):
                    cond.wait(nearest - now)


_watchdog = _Watchdog()
_current = threading.local()


class _Watched:
    """Hands the socket of each request to the thread's current :class:`Watch`."""

    sock: Any

    def _watch(self) -> None:
        watch = getattr(_current, "watch", None)
        if watch is not None and self.sock is not None:
            watch.attach(self.sock)

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        self._watch()

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._watch()  # a reused connection already has its socket
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _Pool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _TLSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


# -- pools ---------------------------------------------------------------------------------------
_pools: dict[tuple[str, str, int | None], urllib3.HTTPConnectionPool] = {}
_pools_lock = threading.Lock()
_timeouts: dict[float, urllib3.Timeout] = {}


def _pool_for(url: str) -> urllib3.HTTPConnectionPool:
    parsed = urllib3.util.parse_url(url)
    scheme = parsed.scheme or "http"
    key = (scheme, parsed.host or "", parsed.port)
    pool = _pools.get(key)
    if pool is None:
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                cls = _TLSPool if scheme == "https" else _Pool
                pool = cls(
                    parsed.host or "", parsed.port, maxsize=CONNECTIONS_PER_HOST, block=False
                )
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


def _after_fork_in_child() -> None:
    """A child must not share the parent's sockets nor wait on its watchdog thread."""
    global _pools_lock, _watchdog
    _pools.clear()
    _pools_lock = threading.Lock()
    _watchdog = _Watchdog()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _live_pool(ep: Endpoint) -> urllib3.HTTPConnectionPool:
    pool = ep._pool
    if pool is None or pool.pool is None:  # first use, or closed (after a fork, a test)
        pool = ep._pool = _pool_for(ep.url)
    return pool


def _socket_timeout(seconds: float) -> urllib3.Timeout:
    value = _timeouts.get(seconds)
    if value is None:
        value = _timeouts[seconds] = urllib3.Timeout(connect=seconds, read=seconds)
    return value


# -- requests ------------------------------------------------------------------------------------
class Response:
    """A whole answer: status, headers and the decoded body bytes."""

    __slots__ = ("content", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], content: bytes) -> None:
        self.status = status
        self.headers = headers
        self.content = content


def _open(
    ep: Endpoint, body: bytes, watch: Watch, seconds: float, stream: bool
) -> urllib3.BaseHTTPResponse:
    _current.watch = watch
    try:
        return _live_pool(ep).urlopen(
            "POST",
            ep._path,
            body=body,
            headers=ep.headers_for(body),
            timeout=_socket_timeout(seconds),
            retries=False,
            redirect=False,
            assert_same_host=False,
            preload_content=False,
            decode_content=False,
        )
    finally:
        _current.watch = None


def _read_all(resp: urllib3.BaseHTTPResponse, limit: int, truncate: bool = False) -> bytes:
    encoding = resp.headers.get("content-encoding")
    length = resp.length_remaining
    if encoding is None and length is not None and length <= limit:
        # A plain body whose size is announced and within the cap: read it in one go (the
        # watchdog still bounds the time it takes).
        return resp.read(decode_content=False)
    inflater = Inflater(encoding, limit)
    out = bytearray()
    try:
        while raw := resp.read1(SLICE):
            for piece in inflater.feed(raw):
                out += piece
        out += inflater.flush()
    except BodyTooLarge:
        if not truncate:
            raise
    return bytes(out[:limit])


def _close(resp: urllib3.BaseHTTPResponse | None, clean: bool) -> None:
    if resp is None:
        return
    if not clean:
        resp.close()
    resp.release_conn()


def post(ep: Endpoint, body: bytes, timeout: float | None = None) -> Response:
    """POST ``body``; the whole attempt (connect to last byte) ends within ``timeout`` seconds.

    Raises the typed error of an error status, of a failed or timed-out request, of a body
    over ``ep.limits.max_response_bytes`` or one that cannot be decoded.
    """
    seconds = DEFAULT_TIMEOUT if timeout is None else timeout
    watch = Watch(monotonic() + seconds)
    _watchdog.add(watch)
    resp = None
    clean = False
    try:
        resp = _open(ep, body, watch, seconds, False)
        status = resp.status
        if status >= 300:
            data = _read_all(resp, MAX_ERROR_BODY, truncate=True)
        else:
            data = _read_all(resp, ep.limits.max_response_bytes)
        if watch.fired:  # the socket was shut mid-body: what we read is not the answer
            raise TimeoutError
        clean = True
    except Exception as exc:
        raise ep.failure(exc, watch.fired, f"timed out after {seconds:g}s") from exc
    finally:
        _watchdog.remove(watch)
        _close(resp, clean)
    if status >= 300:
        ep.raise_status(status, data, resp.headers)
    return Response(status, resp.headers, data)


class EventStream:
    """The events of one streamed answer (SSE, or another :class:`Framing`'s), read with a
    plain ``for``.

    The provider adapter calls :meth:`content` when an event carried content (that moves the
    deadline from the first-chunk bound to the idle bound), :meth:`finish` once the stream
    has logically ended (the connection is reused when the HTTP body ends promptly), and
    :meth:`close` to abandon it.
    """

    __slots__ = (
        "_closed",
        "_decoder",
        "_end",
        "_ep",
        "_idle",
        "_inflater",
        "_resp",
        "_started",
        "_watch",
        "_why",
        "headers",
    )

    def __init__(
        self,
        ep: Endpoint,
        resp: urllib3.BaseHTTPResponse,
        watch: Watch,
        timeouts: StreamTimeouts,
        started: float,
        decoder: Decoder | None = None,
    ) -> None:
        self._ep = ep
        self._resp = resp
        self._watch = watch
        self._idle = timeouts.idle
        self._end = float("inf") if timeouts.total is None else started + timeouts.total
        self._started = started
        self._why = f"no content within first_chunk_timeout={timeouts.first_chunk:g}s"
        self._closed = False
        self.headers: Mapping[str, str] = resp.headers
        limits = ep.limits
        self._inflater = Inflater(resp.headers.get("content-encoding"), limits.max_response_bytes)
        self._decoder = decoder or SSE.decoder(limits.max_event_bytes)

    def content(self) -> None:
        now = monotonic()
        idle_at = now + self._idle
        watch = self._watch
        if idle_at < self._end:
            watch.at = idle_at
            self._why = f"no content for idle_timeout={self._idle:g}s"
        else:
            watch.at = self._end
            self._why = "the stream did not end before the deadline"
        _watchdog.moved(watch)

    def __iter__(self) -> Iterator[Event]:
        try:
            while (batch := self.read()) is not None:
                yield from batch
        except GeneratorExit:
            self.close()
            raise

    def read(self) -> list[Event] | None:
        """The events completed by the upstream's next read (often one, possibly none), or
        None once the stream is over."""
        if self._closed:
            return None
        watch = self._watch
        try:
            raw = self._resp.read1(SLICE)
            if not raw:
                if watch.fired:  # the watchdog shut the socket: not a real end
                    raise self._ep.timed_out(self._why)
                decoder = self._decoder
                events = decoder.feed(self._inflater.flush()) + decoder.end()
                self._finished(clean=True)
                return events or None
            decoder = self._decoder
            events = []
            for piece in self._inflater.feed(raw):
                events += decoder.feed(piece)
            return events
        except Exception as exc:
            self.close()
            raise self._ep.failure(exc, watch.fired, self._why) from exc

    def finish(self) -> None:
        """The stream ended logically (e.g. OpenAI's ``[DONE]``): read the rest of the HTTP body
        briefly so the connection can be reused, else close it."""
        if self._closed:
            return
        self._watch.at = min(self._watch.at, monotonic() + _DRAIN_SECONDS)
        _watchdog.moved(self._watch)
        try:
            drained = 0
            while raw := self._resp.read1(SLICE):
                drained += len(raw)
                if drained > SLICE:
                    raise OSError("too much data after the end of the stream")
        except Exception:
            self.close()
            return
        self._finished(clean=not self._watch.fired)

    def close(self) -> None:
        if not self._closed:
            self._finished(clean=False)

    def _finished(self, clean: bool) -> None:
        self._closed = True
        _watchdog.remove(self._watch)
        _close(self._resp, clean)


def post_stream(
    ep: Endpoint, body: bytes, timeouts: StreamTimeouts, framing: Framing = SSE
) -> EventStream:
    """POST and return the answer's events once the status is checked (see
    :class:`EventStream`): SSE unless another ``framing`` is named. Connecting and the headers
    count against the first-chunk bound."""
    started = monotonic()
    watch = Watch(started + timeouts.first_chunk)
    _watchdog.add(watch)
    resp = None
    why = f"no content within first_chunk_timeout={timeouts.first_chunk:g}s"
    try:
        resp = _open(ep, body, watch, timeouts.first_chunk, True)
        status = resp.status
        if status >= 300:
            data = _read_all(resp, MAX_ERROR_BODY, truncate=True)
            headers = resp.headers
            _close(resp, True)
            resp = None
            ep.raise_status(status, data, headers)
        if not (resp.headers.get("content-type") or "").lower().startswith(framing.media_type):
            sample = _read_all(resp, 500, truncate=True)
            ep.check_event_stream(resp.headers, sample, framing.media_type)
        decoder = framing.decoder(ep.limits.max_event_bytes)
        return EventStream(ep, resp, watch, timeouts, started, decoder)
    except Exception as exc:
        _watchdog.remove(watch)
        _close(resp, False)
        raise ep.failure(exc, watch.fired, why) from exc
