"""HTTP/1.1 for the server: each connection parsed as it arrives, the ASGI app called once per
request, and every client bounded in time and in what it may make the server hold.

Why not uvicorn, which served the app before: its per-message work was a sixth of the
server's CPU per request on a relayed stream (BENCHMARKS.md), and it has no bound on a client
that sends its headers or its body slowly, or nothing at all: 2,000 such connections held
2,000 descriptors for good. Here (defaults in :class:`ClientBounds`, ``server:`` in the config):

* ``header_timeout``: a request's headers must be complete this long after its first byte
  (after the connection opened, for its first request); else 408 and the connection closes;
* ``body_timeout``: a body that stalls this long (no byte) gets 408 and a close;
* ``send_timeout``: a client that reads nothing of its answer for this long is cut off;
* ``keep_alive``: an idle connection between requests is closed after this;
* ``max_connections``: past this many open connections a worker answers 503 to a new one and
  closes it (a descriptor per connection: keep it under ``ulimit -n``).

A head over :data:`MAX_HEAD` bytes or with more than :data:`MAX_FIELDS` fields is a 431; a
malformed request line or header, ``Content-Length`` together with ``Transfer-Encoding``, or
conflicting lengths are a 400 and a close: nothing ambiguous about where a request ends is
ever served. A request body is read only as the app asks for it (``Expect: 100-continue`` is
answered then), and at most :data:`BODY_BUFFER` bytes of it wait in memory; an answer the
client is slow to read waits for the socket to drain (the transport's flow control).

The app sees ASGI 3 (``http`` scopes; ``http.request``/``http.disconnect`` from ``receive``;
``http.response.start``/``body`` to ``send``): the same app also runs under any ASGI server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from typing import Any
from urllib.parse import unquote

from msgflux._transport.wire import Chunked, ProtocolError

__all__ = [
    "BODY_BUFFER",
    "MAX_FIELDS",
    "MAX_HEAD",
    "ClientBounds",
    "Connection",
    "Serving",
]

logger = logging.getLogger("msgflux.server")

MAX_HEAD = 64 << 10
"""A request's line and headers together."""
MAX_FIELDS = 100
BODY_BUFFER = 1 << 20
"""Request body bytes held before the socket stops being read (until the app reads them)."""


@dataclasses.dataclass(frozen=True)
class ClientBounds:
    """How long and how much a client may take (see the module docstring)."""

    header_timeout: float = 30.0
    body_timeout: float = 30.0
    send_timeout: float = 60.0
    keep_alive: float = 15.0
    max_connections: int = 4096


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    499: "Client Closed Request",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    529: "Overloaded",
}
_STATUS_LINES = {code: f"HTTP/1.1 {code} {text}\r\n".encode() for code, text in _REASONS.items()}
_TOKEN = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _unsplit(head: bytes) -> bytes:
    """``head`` without the header lines holding a bare CR or LF (a value an upstream echoed
    must never start a header or an answer of its own)."""
    lines = head.split(b"\r\n")
    kept = [line for line in lines if b"\r" not in line and b"\n" not in line]
    return b"\r\n".join(kept)


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else f"HTTP/1.1 {status} \r\n".encode()


def _plain(status: int, text: str) -> bytes:
    """A whole answer that closes the connection (the server's own refusals)."""
    body = f'{{"error":{{"message":"{text}","type":"invalid_request_error"}}}}'.encode()
    return (
        _status_line(status)
        + b"content-type: application/json\r\nconnection: close\r\n"
        + b"content-length: %d\r\n\r\n" % len(body)
        + body
    )


def parse_head(head: bytes) -> tuple[str, bytes, bool, list[tuple[bytes, bytes]]]:
    """``(method, target, http/1.1?, headers)`` of a request head (without its blank line);
    header names lower-cased. Raises :class:`BadRequest`."""
    lines = head.split(b"\r\n")
    flat = head.replace(b"\r\n", b"")
    if b"\n" in flat or b"\r" in flat or b"\0" in flat:
        raise BadRequest(400, "a bare CR, LF or NUL in the request head")
    request_line = lines[0]
    parts = request_line.split(b" ")
    if len(parts) != 3 or not parts[0] or parts[0].translate(None, _TOKEN):
        raise BadRequest(400, "a malformed request line")
    method, target, version = parts
    if version == b"HTTP/1.1":
        modern = True
    elif version == b"HTTP/1.0":
        modern = False
    else:
        raise BadRequest(400, "an unsupported HTTP version")
    if not target.startswith(b"/") and target != b"*":
        raise BadRequest(400, "the request target must be a path")
    if len(lines) - 1 > MAX_FIELDS:
        raise BadRequest(431, f"over {MAX_FIELDS} header fields")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name.translate(None, _TOKEN):
            raise BadRequest(400, "a malformed header line")
        headers.append((name.lower(), value.strip(b" \t")))
    return method.decode("ascii"), target, modern, headers


# -- one request/response cycle ------------------------------------------------------------------
class _Cycle:
    """One request's body as the app reads it and its answer as the app writes it."""

    __slots__ = (
        "_chunks",
        "_left",
        "_waiter",
        "body_done",
        "buffered",
        "chunked_out",
        "complete",
        "conn",
        "continue_sent",
        "expect_continue",
        "given_last",
        "head_only",
        "keep_alive",
        "parts",
        "pending_head",
        "started",
        "status",
        "to_close",
    )

    def __init__(self, conn: Connection, keep_alive: bool, head_only: bool) -> None:
        self.conn = conn
        self.keep_alive = keep_alive
        self.head_only = head_only
        self._chunks: Chunked | None = None
        self._left = 0
        self._waiter: asyncio.Future[None] | None = None
        self.parts: deque[bytes] = deque()
        self.buffered = 0
        self.body_done = True
        self.given_last = False
        """The last ``http.request`` message was handed to the app."""
        self.expect_continue = False
        self.continue_sent = False
        self.started = False
        self.status = 0
        self.chunked_out = False
        self.pending_head: Any = None
        """The answer's headers, written with its first body bytes (one write)."""
        self.to_close = False
        self.complete = False

    # -- the request body ------------------------------------------------------------------
    def expect(self, length: int | None, chunked: bool) -> None:
        if chunked:
            self._chunks = Chunked()
            self.body_done = False
        elif length:
            self._left = length
            self.body_done = False

    def feed(self, data: bytes, pos: int) -> int:
        """Take body bytes from ``data[pos:]``; returns where the body ended (the rest is
        the next request's)."""
        chunks = self._chunks
        if chunks is not None:
            pos = chunks.feed(data, pos, self._emit)
            if chunks.done:
                self._body_end()
            return pos
        take = min(self._left, len(data) - pos)
        self._emit(data[pos : pos + take] if pos or take < len(data) else data)
        self._left -= take
        if self._left == 0:
            self._body_end()
        return pos + take

    def _emit(self, piece: bytes) -> None:
        if piece:
            self.parts.append(piece)
            self.buffered += len(piece)
            if self.buffered > BODY_BUFFER:
                self.conn.pause_reading()
            self._wake()

    def _body_end(self) -> None:
        self.body_done = True
        self.conn.body_ended()
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        """ASGI ``receive``: the body (``http.request``), then, once the answer is complete
        or the client gone, ``http.disconnect``."""
        conn = self.conn
        while True:
            parts = self.parts
            if parts or (self.body_done and not self.given_last):
                body = parts.popleft() if len(parts) == 1 else b"".join(parts)
                parts.clear()
                self.buffered = 0
                more = not self.body_done
                self.given_last = not more
                conn.resume_reading()
                return {"type": "http.request", "body": body, "more_body": more}
            if self.complete or conn.lost:
                return {"type": "http.disconnect"}
            if self.expect_continue and not self.continue_sent and not self.body_done:
                self.continue_sent = True
                conn.write(_CONTINUE)
            self._waiter = conn.loop.create_future()
            await self._waiter

    # -- the answer ------------------------------------------------------------------------
    async def send(self, message: dict[str, Any]) -> None:
        """ASGI ``send``."""
        conn = self.conn
        if conn.lost or self.complete:
            return
        kind = message["type"]
        if kind == "http.response.start":
            if self.started:
                raise RuntimeError("http.response.start sent twice")
            self.started = True
            self.status = message["status"]
            self.pending_head = message.get("headers") or ()
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.started:
            raise RuntimeError("http.response.body before http.response.start")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        head = self.pending_head
        if head is not None:
            self.pending_head = None
            data = self._head(head, body, more)
        elif self.head_only:
            data = b""
        elif self.chunked_out:
            data = b"%x\r\n%b\r\n" % (len(body), body) if body else b""
        else:
            data = body
        if not more:
            if self.chunked_out and not self.head_only:
                data += b"0\r\n\r\n"
            self.complete = True
        if data:
            if more:
                conn.write_soon(data)
            else:
                conn.write(data)
        if not more:
            self._wake()  # a pending receive() learns the exchange is over
            conn.answered(self)
        elif conn.write_paused:
            await conn.drained()

    def _head(self, headers: Any, body: bytes, more: bool) -> bytes:
        out = [_status_line(self.status)]
        length = False
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"content-length":
                length = True
            elif lowered in (b"connection", b"transfer-encoding"):
                continue
            out.append(b"%b: %b\r\n" % (name, value))
        if not length:
            if not more:
                out.append(b"content-length: %d\r\n" % len(body))
            elif self.conn.modern:
                out.append(b"transfer-encoding: chunked\r\n")
                self.chunked_out = True
            else:
                self.keep_alive = False  # HTTP/1.0: the end of the body is the close
        if not self.keep_alive or self.conn.serving.draining or not self.body_done:
            # (an answer before the whole body was read, a refusal: the connection closes)
            self.to_close = True
            out.append(b"connection: close\r\n")
        elif not self.conn.modern:
            out.append(b"connection: keep-alive\r\n")
        out.append(b"\r\n")
        head = b"".join(out)
        lines = head.count(b"\r\n")
        if head.count(b"\n") != lines or head.count(b"\r") != lines:
            head = _unsplit(head)  # never let a header value split the answer
        if self.head_only:
            return head
        out = [head]
        if self.chunked_out:
            if body:
                out.append(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            out.append(body)
        return b"".join(out)


# -- the connection ------------------------------------------------------------------------------
_HEADERS, _BODY, _BUSY, _IDLE, _LINGER = range(5)
LINGER = 2.0
"""Seconds a connection closed while its client is still sending (a body refused with 413)
goes on reading and dropping what arrives, its answer sent and its own side shut: closed at
once, its kernel would answer those bytes with a reset, which can destroy the answer before
the client reads it."""


class Connection(asyncio.Protocol):
    """One client connection: requests one after another (see the module docstring)."""

    __slots__ = (
        "_corked",
        "_deadline",
        "_drain",
        "_phase",
        "_timer",
        "buf",
        "client",
        "cycle",
        "local",
        "loop",
        "lost",
        "modern",
        "paused",
        "serving",
        "task",
        "transport",
        "write_paused",
    )

    def __init__(self, serving: Serving) -> None:
        self.serving = serving
        self.loop = serving.loop
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.cycle: _Cycle | None = None
        self.task: asyncio.Task[None] | None = None
        self.lost = False
        self.paused = False
        self.write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._corked: list[bytes] = []
        self.modern = True
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._phase = _HEADERS

    # -- time bounds -----------------------------------------------------------------------
    def _bound(self, phase: int, seconds: float) -> None:
        """Arm the connection's one timer for ``phase``, ``seconds`` from now (a timer armed
        for later is kept and re-armed when it fires: moving a deadline costs nothing)."""
        self._phase = phase
        self._deadline = deadline = self.loop.time() + seconds
        timer = self._timer
        if timer is not None and timer.when() > deadline:
            timer.cancel()
            timer = None
        if timer is None:
            self._timer = self.loop.call_at(deadline, self._expired)

    def _unbound(self) -> None:
        """No bound while the app works (the armed timer, if any, fires and does nothing:
        cheaper than cancelling it on every request)."""
        self._phase = _BUSY

    def _expired(self) -> None:
        self._timer = None
        if self.lost or self._phase == _BUSY:
            return
        now = self.loop.time()
        if now < self._deadline:  # moved later since it was armed
            self._timer = self.loop.call_at(self._deadline, self._expired)
            return
        phase = self._phase
        if phase == _LINGER:
            if self.transport is not None:
                self.transport.close()
        elif phase == _IDLE or (phase == _HEADERS and not self.buf and self.cycle is None):
            self.close()
        elif phase == _HEADERS:
            self.refuse(408, "the request headers did not arrive in time (header_timeout)")
        else:  # _BODY
            cycle = self.cycle
            if cycle is not None and not cycle.started:
                cycle.complete = True
                self.refuse(408, "the request body stalled (body_timeout)")
            else:
                self.close()

    # -- asyncio callbacks -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        serving = self.serving
        serving.connections.add(self)
        if len(serving.connections) > serving.bounds.max_connections:
            self.refuse(503, "too many open connections; try again later")
            return
        peer = transport.get_extra_info("peername")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        sock = transport.get_extra_info("sockname")
        self.local = (sock[0], sock[1]) if isinstance(sock, tuple) else None
        self._bound(_HEADERS, serving.bounds.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._phase == _LINGER:
            return
        cycle = self.cycle
        if cycle is not None and not cycle.body_done:
            if self.serving.bounds.body_timeout:
                self._deadline = self.loop.time() + self.serving.bounds.body_timeout
            try:
                pos = cycle.feed(data, 0)
            except ProtocolError as exc:
                self.refuse(400, f"a malformed request body: {exc}")
                return
            if pos < len(data):
                self.buf += data[pos:]
                self._hold()
            return
        self.buf = self.buf + data if self.buf else data
        if cycle is None:
            self._next()
        else:
            self._hold()  # the next request, pipelined: read once this one is answered

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._phase = _BUSY
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.serving.connections.discard(self)
        cycle = self.cycle
        if cycle is not None:
            cycle._wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain = self._drain
        if drain is not None:
            self._drain = None
            if not drain.done():
                drain.set_result(None)

    # -- requests --------------------------------------------------------------------------
    def _hold(self) -> None:
        if len(self.buf) > MAX_HEAD:
            self.pause_reading()

    def _next(self) -> None:
        """Start the request whose head is in ``buf``, if it is whole."""
        buf = self.buf
        if not buf or self.lost or self.cycle is not None:
            return
        if self._phase == _IDLE:  # its first byte: the headers' bound starts now
            self._bound(_HEADERS, self.serving.bounds.header_timeout)
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD:
                self.refuse(431, f"the request head is over {MAX_HEAD} bytes")
            return
        if end > MAX_HEAD:
            self.refuse(431, f"the request head is over {MAX_HEAD} bytes")
            return
        try:
            method, target, modern, headers = parse_head(buf[:end])
            length, chunked = _framing(headers)
        except BadRequest as exc:
            self.refuse(exc.status, exc.message)
            return
        self.modern = modern
        keep_alive = modern
        expect = False
        for name, value in headers:
            if name == b"connection":
                tokens = value.lower()
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
            elif name == b"expect" and value.lower() == b"100-continue":
                expect = True
        cycle = _Cycle(self, keep_alive and not self.serving.draining, method == "HEAD")
        cycle.expect_continue = expect
        cycle.expect(length, chunked)
        self.cycle = cycle
        rest = end + 4
        if not cycle.body_done and rest < len(buf):
            try:
                rest = cycle.feed(buf, rest)
            except ProtocolError as exc:
                self.refuse(400, f"a malformed request body: {exc}")
                return
        self.buf = buf[rest:]
        if cycle.body_done:
            self._unbound()
        else:
            self._bound(_BODY, self.serving.bounds.body_timeout)
        raw_path, _, query = target.partition(b"?")
        path = raw_path.decode("latin-1")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1" if modern else "1.0",
            "server": self.local,
            "client": self.client,
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": unquote(path) if "%" in path else path,
            "raw_path": raw_path,
            "query_string": query,
            "headers": headers,
        }
        self.task = self.loop.create_task(self._run(scope, cycle))

    def body_ended(self) -> None:
        if self._phase == _BODY:
            self._unbound()

    async def _run(self, scope: dict[str, Any], cycle: _Cycle) -> None:
        serving = self.serving
        serving.active += 1
        try:
            await serving.app(scope, cycle.receive, cycle.send)
        except asyncio.CancelledError:
            pass  # cut by a drain's end
        except Exception:
            logger.exception("unexpected error in the app serving %s", scope["path"])
            if not cycle.started:
                cycle.complete = True
                self.refuse(500, "internal server error")
        finally:
            serving.active -= 1
            if not cycle.complete and not self.lost:
                self.close()  # an answer left unfinished cannot be reused
            serving.idle_now()

    def answered(self, cycle: _Cycle) -> None:
        """``cycle``'s answer is complete: keep the connection for the next request, or close
        it (asked to, draining, or its request body not read to the end)."""
        if cycle.to_close or not cycle.body_done or self.serving.draining:
            self.close()
            return
        self.cycle = None
        self.resume_reading()
        self._bound(_IDLE, self.serving.bounds.keep_alive)
        if self.buf:
            self.loop.call_soon(self._next)

    # -- writing ---------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        corked = self._corked
        if corked:
            corked.append(data)
            data = b"".join(corked)
            corked.clear()
        transport = self.transport
        if transport is not None and not self.lost and self._phase != _LINGER:
            transport.write(data)

    def write_soon(self, data: bytes) -> None:
        """Write ``data`` at the end of the loop's pass, with what else is written in it (a
        stream's events that arrived together leave in one write)."""
        corked = self._corked
        if not corked:
            self.loop.call_soon(self._uncork)
        corked.append(data)

    def _uncork(self) -> None:
        corked = self._corked
        if corked:
            data = corked[0] if len(corked) == 1 else b"".join(corked)
            corked.clear()
            transport = self.transport
            if transport is not None and not self.lost and self._phase != _LINGER:
                transport.write(data)

    async def drained(self) -> None:
        """Wait for the client to read what was written (at most ``send_timeout``)."""
        if self._drain is None or self._drain.done():
            self._drain = self.loop.create_future()
        try:
            await asyncio.wait_for(asyncio.shield(self._drain), self.serving.bounds.send_timeout)
        except asyncio.TimeoutError:
            logger.info("closing a connection whose client stopped reading (send_timeout)")
            self.abort()

    def pause_reading(self) -> None:
        if not self.paused and self.transport is not None and not self.lost:
            self.paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.paused and self.transport is not None and not self.lost:
            self.paused = False
            self.transport.resume_reading()

    def refuse(self, status: int, message: str) -> None:
        """Answer ``status`` and close (the server's own refusals)."""
        self.write(_plain(status, message))
        self.close()

    def close(self) -> None:
        """Close once what was written has left; a client still sending its body first gets
        :data:`LINGER` seconds to finish (what it sends is dropped)."""
        transport = self.transport
        if transport is None or self.lost or self._phase == _LINGER:
            return
        self._unbound()
        cycle = self.cycle
        if cycle is not None and not cycle.body_done and transport.can_write_eof():
            cycle.complete = True  # its app reads a disconnect and writes nothing more
            cycle._wake()
            self.cycle = None
            self.buf = b""
            self._uncork()
            transport.write_eof()
            self.resume_reading()
            self._bound(_LINGER, LINGER)
            return
        transport.close()

    def abort(self) -> None:
        self._unbound()
        if self.transport is not None and not self.lost:
            self.transport.abort()


def _framing(headers: list[tuple[bytes, bytes]]) -> tuple[int | None, bool]:
    """``(Content-Length, chunked?)`` of a request: anything ambiguous is a 400."""
    length: int | None = None
    coding: bytes | None = None
    for name, value in headers:
        if name == b"content-length":
            for item in value.split(b","):
                item = item.strip()
                if not item.isdigit() or len(item) > 18:
                    raise BadRequest(400, "an invalid Content-Length")
                if length is not None and int(item) != length:
                    raise BadRequest(400, "conflicting Content-Length headers")
                length = int(item)
        elif name == b"transfer-encoding":
            if coding is not None:
                raise BadRequest(400, "more than one Transfer-Encoding header")
            coding = value.lower()
    if coding is not None:
        if length is not None:
            raise BadRequest(400, "both Content-Length and Transfer-Encoding")
        if coding != b"chunked":
            raise BadRequest(501, "only the chunked Transfer-Encoding is supported")
        return None, True
    return length, False


# -- the listener --------------------------------------------------------------------------------
class Serving:
    """The connections of one worker and its drain (see the module docstring)."""

    def __init__(self, app: Any, loop: asyncio.AbstractEventLoop, bounds: ClientBounds) -> None:
        self.app = app
        self.loop = loop
        self.bounds = bounds
        self.connections: set[Connection] = set()
        self.active = 0
        """Requests the app is serving."""
        self.draining = False
        self._idle: asyncio.Event | None = None

    def protocol(self) -> Connection:
        return Connection(self)

    def idle_now(self) -> None:
        if self._idle is not None and self.active == 0:
            self._idle.set()

    async def drain(self, grace: float) -> None:
        """Close idle connections, let the requests in flight finish (each connection closes
        after its answer) for up to ``grace`` seconds, then cut what is left."""
        self.draining = True
        for conn in list(self.connections):
            if conn.cycle is None:
                conn.close()
        if self.active:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), grace)
            except asyncio.TimeoutError:
                logger.warning("shutdown_grace passed: cutting %d requests in flight", self.active)
        self.cut()

    def cut(self) -> None:
        for conn in list(self.connections):
            if conn.task is not None and not conn.task.done():
                conn.task.cancel()
            conn.abort()
