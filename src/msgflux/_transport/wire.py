"""HTTP/1.1 over asyncio for the async client: one connection's wire format, and a keep-alive
pool per event loop.

Why not an HTTP library: a gateway's async client does one thing (POST a body, read a whole
answer or an SSE stream) and does it on every request, so its cost is the gateway's floor.
aiohttp's client took about 100 µs of CPU per request for that (measured in BENCHMARKS.md),
most of what a bare proxy spends; this one takes a fraction of it, because it does only that:

* a request is one ``write`` of a head built once per endpoint (:func:`request_head`) plus
  ``Content-Length`` and the body;
* an answer is parsed as it arrives by :class:`Answer` (status line and headers, then the
  body by ``Content-Length``, ``chunked`` or to the connection's end) into raw byte pieces
  a reader takes with :meth:`Answer.readany`; decoding (gzip) and byte budgets are
  :mod:`.body`'s, time bounds the caller's;
* connections are kept per ``(host, port, tls)`` for reuse (:class:`Pool`), at most
  :data:`IDLE_SECONDS` idle and :data:`MAX_IDLE` per origin.

Bounded whatever the upstream sends: a head over :data:`MAX_HEAD` bytes, a malformed status
line, header, chunk size or ``Content-Length`` is a :class:`ProtocolError` (a connection
error); a reader that falls behind pauses the socket past :data:`HIGH_WATER` buffered bytes.
A request header holding CR or LF is refused before anything is sent.
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "HIGH_WATER",
    "IDLE_SECONDS",
    "MAX_HEAD",
    "MAX_IDLE",
    "Answer",
    "Chunked",
    "Headers",
    "Origin",
    "Pool",
    "ProtocolError",
    "close_pool",
    "header_fields",
    "origin_of",
    "pool",
    "request",
    "request_head",
]

MAX_HEAD = 64 << 10
"""An answer's status line and headers together (aiohttp's and nginx's order of size)."""
MAX_CHUNK_LINE = 4096
HIGH_WATER = 1 << 20
"""Raw bytes an answer buffers before the socket stops being read (until the reader takes)."""
IDLE_SECONDS = 4.0
"""An idle keep-alive connection is reused this long at most: under the 5 s many servers
(uvicorn's default) close it after, so a request never goes out on a socket being closed."""
MAX_IDLE = 256
"""Idle connections kept per origin (the rest are closed)."""


class ProtocolError(ConnectionError):
    """The upstream broke HTTP/1.1 (a malformed or oversized head, a bad chunk, a body cut
    short): the answer is lost, a connection error."""


_FIELD = r"\r\n([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\r\n]*)(?=\r\n|\Z)"
_TEXT_FIELDS = re.compile(_FIELD).findall
_BYTE_FIELDS = re.compile(_FIELD.encode()).findall


def header_fields(head: bytes) -> list[tuple[bytes, bytes]] | None:
    """The ``(name, value)`` fields of a head (its first line left out), values without the
    spaces around them; None when any line is malformed: no colon, a name that is not a
    token, a folded line, a bare CR or LF. One regex pass over the whole head."""
    fields = _BYTE_FIELDS(head)
    if len(fields) != head.count(b"\r\n"):
        return None
    return [(name, value.rstrip(b" \t")) for name, value in fields]


class Headers(Mapping[str, str]):
    """An answer's headers: names matched case-insensitively; a repeated header's values
    joined with ``", "`` (``items()`` yields them as sent, one per line)."""

    __slots__ = ("_map", "raw")

    def __init__(self, raw: list[tuple[str, str]]) -> None:
        self.raw = raw
        found: dict[str, str] = {}
        for name, value in raw:
            key = name.lower()
            found[key] = f"{found[key]}, {value}" if key in found else value
        self._map = found

    @classmethod
    def of(cls, head: str) -> Headers | None:
        """The fields of a whole head (see :func:`header_fields`), or None."""
        raw = _TEXT_FIELDS(head)
        if len(raw) != head.count("\r\n"):
            return None
        return cls([(name, value.rstrip(" \t")) for name, value in raw])

    def __getitem__(self, name: str) -> str:
        return self._map[name.lower()]

    def get(self, name: str, default: Any = None) -> Any:
        return self._map.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def items(self) -> Any:
        return list(self.raw)

    def __repr__(self) -> str:
        return f"Headers({len(self.raw)} fields)"


# -- the request ---------------------------------------------------------------------------------
Origin = tuple[str, int, bool]
"""``(host, port, tls)``: what a connection is opened to and pooled by."""


def origin_of(url: str) -> tuple[Origin, str, str]:
    """``(origin, path with query, Host header value)`` of an ``http(s)://`` URL."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    default = 443 if tls else 80
    port = parts.port or default
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    shown = f"[{host}]" if ":" in host else host
    return (host, port, tls), path, shown if port == default else f"{shown}:{port}"


def request_head(path: str, host: str, headers: Mapping[str, str]) -> bytes:
    """``POST`` head without its ``Content-Length`` line and final blank line (those are per
    request). A name or value holding CR, LF or NUL, or a name that is not a token, raises
    ``ValueError``: a header can never smuggle another request."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}"]
    for name, value in headers.items():
        if not name or any(c in name for c in ' \t\r\n\0:"(),/;<=>?@[\\]{}'):
            raise ValueError(f"invalid header name {name!r}")
        if any(c in value for c in "\r\n\0"):
            raise ValueError(f"header {name!r} holds a line break")
        if name.lower() not in ("host", "content-length", "transfer-encoding", "connection"):
            lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n").encode("latin-1")


# -- the answer ----------------------------------------------------------------------------------
_HEX = b"0123456789abcdefABCDEF"
_SIZE, _DATA, _DATA_END, _TRAILER = range(4)


class Chunked:
    """The ``chunked`` transfer coding, decoded incrementally (a client's answer, a server's
    request body): :meth:`feed` hands each piece of data to ``emit`` and says where it
    stopped; ``done`` once the last chunk and the trailers are in. A malformed size line,
    a chunk not ended by CRLF or trailers over :data:`MAX_HEAD` raise :class:`ProtocolError`."""

    __slots__ = ("_left", "_state", "done")

    def __init__(self) -> None:
        self._state = _SIZE
        self._left = 0
        self.done = False

    def feed(self, buf: bytes, pos: int, emit: Callable[[bytes], None]) -> int:
        """Decode ``buf`` from ``pos``; returns the position of what is left undecoded (an
        incomplete line, or the bytes after the end)."""
        end_of = len(buf)
        while not self.done:
            state = self._state
            if state == _DATA:
                take = min(self._left, end_of - pos)
                if take <= 0:
                    break
                emit(buf[pos : pos + take] if take < end_of - pos or pos else buf)
                pos += take
                self._left -= take
                if self._left == 0:
                    self._state = _DATA_END
            elif state == _SIZE:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if end_of - pos > MAX_CHUNK_LINE:
                        raise ProtocolError("a chunk size line over 4 KiB")
                    break
                size = buf[pos:end].split(b";", 1)[0].strip()
                if not size or len(size) > 16 or size.translate(None, _HEX):
                    raise ProtocolError(f"a malformed chunk size {buf[pos:end][:40]!r}")
                self._left = int(size, 16)
                pos = end + 2
                self._state = _DATA if self._left else _TRAILER
            elif state == _DATA_END:
                if end_of - pos < 2:
                    break
                if buf[pos : pos + 2] != b"\r\n":
                    raise ProtocolError("a chunk not followed by CRLF")
                pos += 2
                self._state = _SIZE
            else:  # _TRAILER: lines up to a blank one, at most MAX_HEAD bytes in all
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if end_of - pos + self._left > MAX_HEAD:
                        raise ProtocolError(f"trailers over {MAX_HEAD} bytes")
                    break
                self._left += end - pos + 2
                if self._left > MAX_HEAD:
                    raise ProtocolError(f"trailers over {MAX_HEAD} bytes")
                if end == pos:
                    self.done = True
                pos = end + 2
        return pos


_HEAD, _LENGTH, _CHUNKED, _TO_CLOSE, _DONE = range(5)


class Answer:
    """One answer, parsed as its bytes arrive (see the module docstring)."""

    __slots__ = (
        "_buf",
        "_chunks",
        "_conn",
        "_left",
        "_state",
        "_waiter",
        "buffered",
        "error",
        "headers",
        "keep_alive",
        "parts",
        "received",
        "status",
    )

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._buf = b""
        self._chunks: Chunked | None = None
        self._state = _HEAD
        self._left = 0
        self._waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.headers: Headers = Headers([])
        self.keep_alive = False
        self.parts: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.received = 0
        """Bytes of the answer (head and body) received so far."""
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self._state == _DONE

    # -- fed by the connection -------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        self.received += len(data)
        state = self._state
        if state == _LENGTH and not self._buf:  # the common case: body bytes as they come
            left = self._left
            if len(data) <= left:
                self._emit(data)
                self._left = left - len(data)
                if self._left == 0:
                    self._finish()
                return
        if state == _TO_CLOSE:
            self._emit(data)
            return
        if state == _DONE:
            raise ProtocolError("data after the end of the answer")
        self._buf = self._buf + data if self._buf else data
        self._parse()

    def eof(self) -> None:
        """The upstream closed its side."""
        if self._state == _TO_CLOSE:
            self._finish()
        elif self._state != _DONE:
            self.fail(ProtocolError("the connection closed before the answer ended"))

    def fail(self, exc: BaseException) -> None:
        if self.error is None and self._state != _DONE:
            self.error = exc
            self._wake()

    def _emit(self, piece: bytes) -> None:
        if piece:
            self.parts.append(piece)
            self.buffered += len(piece)
            if self.buffered > HIGH_WATER:
                self._conn.pause()
            self._wake()

    def _finish(self) -> None:
        self._state = _DONE
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def _parse(self) -> None:
        buf = self._buf
        pos = 0
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if len(buf) - pos > MAX_HEAD:
                        raise ProtocolError(f"an answer head over {MAX_HEAD} bytes")
                    break
                if end - pos > MAX_HEAD:
                    raise ProtocolError(f"an answer head over {MAX_HEAD} bytes")
                self._head(buf[pos:end])
                pos = end + 4
            elif state == _LENGTH:
                take = min(self._left, len(buf) - pos)
                if take <= 0:
                    break
                self._emit(buf[pos : pos + take])
                pos += take
                self._left -= take
                if self._left == 0:
                    self._finish()
            elif state == _CHUNKED:
                chunks = self._chunks
                assert chunks is not None
                pos = chunks.feed(buf, pos, self._emit)
                if not chunks.done:
                    break
                self._finish()
            elif state == _TO_CLOSE:
                self._emit(buf[pos:])
                pos = len(buf)
                break
            else:  # _DONE
                if pos < len(buf):
                    raise ProtocolError("data after the end of the answer")
                break
        self._buf = buf[pos:] if pos < len(buf) else b""

    def _head(self, raw: bytes) -> None:
        head = raw.decode("latin-1")
        end = head.find("\r\n")
        status_line = head if end < 0 else head[:end]
        version = status_line[:9]
        code = status_line[9:12]
        if (
            version not in ("HTTP/1.1 ", "HTTP/1.0 ")
            or not code.isdigit()
            or len(code) != 3
            or "\r" in status_line
            or "\n" in status_line
        ):
            raise ProtocolError(f"a malformed status line {status_line[:80]!r}")
        headers = Headers.of(head)
        if headers is None:
            raise ProtocolError("a malformed header line in the answer's head")
        status = int(code)
        if status < 200:
            return  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self.status = status
        self.headers = headers
        fields = headers._map
        connection = fields.get("connection")
        if version == "HTTP/1.1 ":
            self.keep_alive = connection is None or "close" not in connection.lower()
        else:
            self.keep_alive = connection is not None and "keep-alive" in connection.lower()
        coding = fields.get("transfer-encoding")
        length = fields.get("content-length")
        if status in (204, 304):
            self._finish()
        elif coding is not None:
            if coding.lower().rsplit(",", 1)[-1].strip() != "chunked":
                raise ProtocolError(f"an unsupported Transfer-Encoding {coding!r}")
            self._chunks = Chunked()
            self._state = _CHUNKED
        elif length is not None:
            value = length
            if not value.isdigit():  # "12, 12" (repeated): one value, or it is malformed
                values = {v.strip() for v in length.split(",")}
                value = values.pop()
                if values:
                    value = ""
            if not value.isdigit() or len(value) > 18:
                raise ProtocolError(f"a malformed Content-Length {length!r}")
            self._left = int(value)
            self._state = _LENGTH
            if self._left == 0:
                self._finish()
        else:
            self.keep_alive = False
            self._state = _TO_CLOSE
        self._wake()

    # -- read by the caller ----------------------------------------------------------------
    async def head(self) -> None:
        """Wait for the status line and headers."""
        while self.status == 0:
            await self._wait()

    async def readany(self) -> bytes:
        """The body bytes received since the last call (at least one), or ``b""`` at the end."""
        while True:
            parts = self.parts
            if parts:
                data = parts.popleft() if len(parts) == 1 else b"".join(parts)
                parts.clear()
                self.buffered = 0
                self._conn.resume()
                return data
            if self._state == _DONE:
                return b""
            await self._wait()

    async def _wait(self) -> None:
        if self.error is not None:
            raise self.error
        waiter = self._waiter = self._conn.loop.create_future()
        await waiter
        if self.error is not None and not self.parts:
            raise self.error

    def release(self) -> None:
        """The reader is done: the connection goes back to the pool when the answer is
        whole and the connection may be kept, else it is closed."""
        self._conn.finished(self)

    def close(self) -> None:
        """Abort: the connection is closed at once and a pending read fails."""
        self.fail(ProtocolError("the answer was abandoned"))
        self._conn.abort()


# -- the connection ------------------------------------------------------------------------------
class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: at most one answer in flight."""

    def __init__(self, pool: Pool, origin: Origin) -> None:
        self.pool = pool
        self.loop = pool.loop
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.answer: Answer | None = None
        self.closed = False
        self.paused = False
        self.reused = False
        self.idle_since = 0.0

    # -- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        answer = self.answer
        if answer is None:
            self.abort()  # nothing was asked: a broken server
            return
        try:
            answer.feed(data)
        except ProtocolError as exc:
            answer.fail(exc)
            self.abort()

    def eof_received(self) -> bool:
        answer = self.answer
        if answer is not None:
            answer.eof()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        answer = self.answer
        if answer is not None:
            if answer._state == _TO_CLOSE and exc is None:
                answer._finish()
            else:
                answer.fail(
                    ProtocolError(f"the connection was lost: {exc}")
                    if exc is not None
                    else ProtocolError("the connection closed before the answer ended")
                )
        self.pool.forget(self)

    # -- the exchange ------------------------------------------------------------------------
    def send(self, head: bytes, body: bytes) -> Answer:
        transport = self.transport
        assert transport is not None and self.answer is None
        self.answer = answer = Answer(self)
        length = b"Content-Length: %d\r\n\r\n" % len(body)
        if len(body) < 65536:
            transport.write(head + length + body)
        else:
            transport.writelines((head, length, body))
        return answer

    def finished(self, answer: Answer) -> None:
        if self.answer is not answer:
            return
        self.answer = None
        if answer.done and answer.keep_alive and not self.closed and answer.error is None:
            self.resume()
            self.pool.put(self)
        else:
            self.abort()

    def pause(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self.paused and self.transport is not None and not self.closed:
            self.paused = False
            self.transport.resume_reading()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


# -- the pool ------------------------------------------------------------------------------------
_TLS: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
    return _TLS


class Pool:
    """Keep-alive connections of one event loop, per origin (see the module docstring)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: dict[Origin, list[Connection]] = {}
        self.busy: set[Connection] = set()

    async def connect(self, origin: Origin, *, fresh: bool = False) -> Connection:
        """A connection to ``origin``: an idle one (unless ``fresh``), else a new one."""
        stack = None if fresh else self.idle.get(origin)
        if stack:
            now = self.loop.time()
            while stack:
                conn = stack.pop()
                if not conn.closed and now - conn.idle_since < IDLE_SECONDS:
                    conn.reused = True
                    self.busy.add(conn)
                    return conn
                conn.abort()
        host, port, tls = origin
        conn = Connection(self, origin)
        await self.loop.create_connection(
            lambda: conn,
            host,
            port,
            ssl=_tls() if tls else None,
            server_hostname=host if tls else None,
        )
        self.busy.add(conn)
        return conn

    def put(self, conn: Connection) -> None:
        self.busy.discard(conn)
        stack = self.idle.setdefault(conn.origin, [])
        if len(stack) >= MAX_IDLE:
            stack.pop(0).abort()
        conn.idle_since = self.loop.time()
        conn.reused = False
        stack.append(conn)

    def forget(self, conn: Connection) -> None:
        self.busy.discard(conn)
        stack = self.idle.get(conn.origin)
        if stack and conn in stack:
            stack.remove(conn)

    def close(self) -> None:
        for stack in self.idle.values():
            for conn in stack:
                conn.abort()
        self.idle.clear()
        for conn in list(self.busy):
            conn.abort()
        self.busy.clear()


async def request(origin: Origin, head: bytes, body: bytes) -> Answer:
    """Send one request to ``origin`` and wait for its answer's head. A reused connection
    that closes before a byte of the answer is the server closing it as it sat idle (the
    request never reached the application): the request goes once more, on a new
    connection."""
    conns = await pool()
    conn = await conns.connect(origin)
    answer = conn.send(head, body)
    try:
        await answer.head()
    except ProtocolError:
        if not conn.reused or answer.received:
            answer.close()
            raise
        answer.close()
        conn = await conns.connect(origin, fresh=True)
        answer = conn.send(head, body)
        try:
            await answer.head()
        except BaseException:
            answer.close()
            raise
    except BaseException:
        answer.close()
        raise
    return answer


_pools: dict[asyncio.AbstractEventLoop, tuple[Pool, AsyncGenerator[None, None]]] = {}


async def pool() -> Pool:
    """The running loop's pool, closed when the loop shuts down (``asyncio.run`` and
    pytest-asyncio finalise async generators; a parked one closes the pool)."""
    loop = asyncio.get_running_loop()
    entry = _pools.get(loop)
    if entry is not None:
        return entry[0]
    new = Pool(loop)
    closer = _close_at_shutdown(loop, new)
    _pools[loop] = (new, closer)
    await closer.__anext__()
    return new


async def _close_at_shutdown(
    loop: asyncio.AbstractEventLoop, owned: Pool
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        entry = _pools.get(loop)
        if entry is not None and entry[0] is owned:
            del _pools[loop]
        owned.close()


async def close_pool() -> None:
    """Close the running loop's pool now (a new one opens on the next request)."""
    entry = _pools.pop(asyncio.get_running_loop(), None)
    if entry is not None:
        entry[0].close()
        await entry[1].aclose()
