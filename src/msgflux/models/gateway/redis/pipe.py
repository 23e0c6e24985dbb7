"""The hot path to Redis: two script calls per gateway call, over lean pipelined connections.

Why not redis-py's clients for this path: measured on this 2-core machine (BENCHMARKS.md,
"Shared state on Redis"), ``redis.asyncio`` spends well over 100 µs of CPU per command
(pool checkout, locks, instrumentation) and sends each command on its own; with two commands
per gateway call, four processes sharing one Redis lost more than half their throughput.
Here each event loop keeps **one** connection: commands issued in the same loop iteration
leave in one write (auto-pipelining) and hiredis matches the replies in order. The sync side
keeps a small pool of blocking sockets, one request per round trip. Everything else
(snapshots, SCAN, PING) still goes through redis-py, which also parses the URL.

Errors are redis-py's exception types, so callers handle one family:
``ConnectionError`` (refused, reset, closed), ``TimeoutError`` (no answer within
``timeout``; the connection is then dropped), ``ResponseError`` / ``NoScriptError``.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import hiredis
from redis.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import AskError, ClusterDownError, MovedError, NoScriptError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["AsyncPipe", "Endpoint", "SyncPipe", "bulk", "endpoint", "header"]

_READ_SIZE = 65536
_parse_url: Callable[[str], dict[str, Any]] = parse_url


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """Where and how to connect, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    host: str = "localhost"
    port: int = 6379
    path: str | None = None
    tls: ssl.SSLContext | None = None
    username: str | None = dataclasses.field(default=None, repr=False)
    password: str | None = dataclasses.field(default=None, repr=False)
    db: int = 0

    def handshake(self) -> list[tuple[Any, ...]]:
        """Commands sent first on every new connection (AUTH, SELECT)."""
        out: list[tuple[Any, ...]] = []
        if self.password is not None:
            if self.username:
                out.append(("AUTH", self.username, self.password))
            else:
                out.append(("AUTH", self.password))
        if self.db:
            out.append(("SELECT", self.db))
        return out


def endpoint(url: str) -> Endpoint:
    """Parse the URL with redis-py's own rules (query options: ``db``, ``ssl_cert_reqs``...)."""
    opts: dict[str, Any] = _parse_url(url)
    cls = opts.get("connection_class")
    if cls is UnixDomainSocketConnection and not opts.get("path"):
        raise ValueError("a unix:// URL needs the socket's path, e.g. unix:///run/redis.sock")
    tls: ssl.SSLContext | None = None
    if cls is SSLConnection:
        tls = ssl.create_default_context(cafile=opts.get("ssl_ca_certs"))
        reqs = opts.get("ssl_cert_reqs")
        if reqs in ("none", ssl.CERT_NONE):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        elif reqs in ("optional", ssl.CERT_OPTIONAL):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_OPTIONAL
    return Endpoint(
        host=opts.get("host") or "localhost",
        port=int(opts.get("port") or 6379),
        path=opts.get("path") if cls is UnixDomainSocketConnection else None,
        tls=tls,
        username=opts.get("username"),
        password=opts.get("password"),
        db=int(opts.get("db") or 0),
    )


def bulk(value: str | bytes) -> bytes:
    """One argument in the Redis wire format; concatenate them behind :func:`header`."""
    data = value.encode() if isinstance(value, str) else value
    return b"$%d\r\n%s\r\n" % (len(data), data)


def header(count: int) -> bytes:
    """The start of a command of ``count`` arguments (the command name included)."""
    return b"*%d\r\n" % count


def _error(reply: hiredis.ReplyError) -> ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    if message.startswith("MOVED "):  # a Redis Cluster: the slot lives on another node
        return MovedError(message[6:])
    if message.startswith("ASK "):
        return AskError(message[4:])
    if message.startswith(("CLUSTERDOWN", "TRYAGAIN")):
        return ClusterDownError(message)
    return ResponseError(message)


# -- async ----------------------------------------------------------------------------------------
class _Protocol(asyncio.Protocol):
    """One connection: queued commands go out once per loop iteration, replies come in order.

    One watchdog timer per connection (not one per command) enforces the timeout: commands
    are answered in order, so only the oldest unanswered one can be the first to be late.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self.deadlines: collections.deque[float] = collections.deque()
        self.watchdog: asyncio.TimerHandle | None = None
        self.out: list[bytes] = []
        self.flush_scheduled = False
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not isinstance(asyncio.Transport): uvloop's transports are not subclasses of it.
        self.transport = cast(asyncio.Transport, transport)

    def send(self, frame: bytes) -> asyncio.Future[Any]:
        """Queue one packed command; the future gets its reply (or a redis-py error)."""
        loop = self.loop
        fut = loop.create_future()
        self.waiters.append(fut)
        self.deadlines.append(loop.time() + self.timeout)
        self.out.append(frame)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            loop.call_soon(self.flush)
        if self.watchdog is None:
            self.watchdog = loop.call_at(self.deadlines[0], self.check)
        return fut

    def flush(self) -> None:
        self.flush_scheduled = False
        if self.out and self.transport is not None and not self.closed:
            data = self.out[0] if len(self.out) == 1 else b"".join(self.out)
            self.out.clear()
            self.transport.write(data)

    def check(self) -> None:
        self.watchdog = None
        if self.closed or not self.deadlines:
            return
        if self.deadlines[0] <= self.loop.time():
            self.abort(RedisTimeoutError(f"Redis did not answer within {self.timeout:g}s"))
        else:
            self.watchdog = self.loop.call_at(self.deadlines[0], self.check)

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiters = self.waiters
        deadlines = self.deadlines
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(RedisConnectionError(f"Redis protocol error: {exc}"))
                return
            if reply is False:
                return
            if not waiters:  # pragma: no cover - a reply nobody asked for
                continue
            fut = waiters.popleft()
            deadlines.popleft()
            if fut.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(_error(reply))
            else:
                fut.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"Connection to Redis lost: {exc or 'closed by server'}"))

    def fail(self, error: Exception) -> None:
        self.closed = True
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self.deadlines.clear()
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(error)

    def abort(self, error: Exception) -> None:
        """Drop the connection (its pending replies can no longer be trusted to arrive)."""
        self.fail(error)
        if self.transport is not None:
            self.transport.abort()


class AsyncPipe:
    """One auto-pipelined connection per event loop, closed when that loop shuts down."""

    def __init__(self, ep: Endpoint, timeout: float) -> None:
        self.endpoint = ep
        self.timeout = timeout
        self._conns: dict[asyncio.AbstractEventLoop, _Protocol] = {}
        self._connecting: dict[asyncio.AbstractEventLoop, asyncio.Future[_Protocol]] = {}
        self._closers: dict[asyncio.AbstractEventLoop, AsyncIterator[None]] = {}

    def ready(self, loop: asyncio.AbstractEventLoop) -> _Protocol | None:
        """This loop's open connection, if it has one (for senders that cannot wait)."""
        proto = self._conns.get(loop)
        return proto if proto is not None and not proto.closed else None

    async def call(self, *args: Any) -> Any:
        return await self.call_packed(hiredis.pack_command(args))

    async def call_packed(self, frame: bytes) -> Any:
        """Send one command already in the wire format (see :func:`bulk`)."""
        proto = self._conns.get(asyncio.get_running_loop())
        if proto is None or proto.closed:
            proto = await self._connection(asyncio.get_running_loop())
        return await proto.send(frame)

    async def _connection(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        pending = self._connecting.get(loop)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = self._connecting[loop] = loop.create_future()
        try:
            proto = await self._connect(loop)
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else RedisConnectionError(repr(exc))
            pending.set_exception(error)
            pending.exception()  # retrieved here, so an unawaited failure is not reported
            raise
        finally:
            del self._connecting[loop]
        pending.set_result(proto)
        old = self._conns.get(loop)
        if old is not None:
            self._drop(old)
        self._conns[loop] = proto
        if loop not in self._closers:
            closer = self._close_at_shutdown(loop)
            self._closers[loop] = closer
            await closer.__anext__()
        return proto

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        ep = self.endpoint
        try:
            if ep.path is not None:
                connect = loop.create_unix_connection(
                    lambda: _Protocol(loop, self.timeout), ep.path
                )
            else:
                connect = loop.create_connection(
                    lambda: _Protocol(loop, self.timeout),
                    ep.host,
                    ep.port,
                    ssl=ep.tls,
                    server_hostname=ep.host if ep.tls is not None else None,
                )
            _, proto = await asyncio.wait_for(connect, self.timeout)
            for command in ep.handshake():
                await proto.send(hiredis.pack_command(command))
        except asyncio.TimeoutError:
            raise RedisTimeoutError(f"Timeout connecting to Redis ({self.timeout:g}s)") from None
        except OSError as exc:
            raise RedisConnectionError(f"Error connecting to Redis: {exc}") from None
        sock = proto.transport.get_extra_info("socket") if proto.transport else None
        if sock is not None and ep.path is None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return proto

    def _drop(self, proto: _Protocol) -> None:
        """Close a connection now. Over TLS without waiting for the peer's close_notify: a
        loop shutting down would not wait for it, and the socket would stay open."""
        if proto.transport is None:
            return
        if self.endpoint.tls is not None:
            proto.transport.abort()
        else:
            proto.transport.close()

    async def _close_at_shutdown(self, loop: asyncio.AbstractEventLoop) -> AsyncIterator[None]:
        """Parked async generator: the loop's ``shutdown_asyncgens()`` resumes it to close."""
        try:
            yield
        finally:
            self._closers.pop(loop, None)
            proto = self._conns.pop(loop, None)
            if proto is not None:
                self._drop(proto)

    async def aclose(self) -> None:
        """Close the running loop's connection now (reopened on the next call)."""
        loop = asyncio.get_running_loop()
        proto = self._conns.pop(loop, None)
        closer = self._closers.pop(loop, None)
        if proto is not None and proto.transport is not None:
            self._drop(proto)
            await asyncio.sleep(0)  # let the transport finish closing in this loop
        if closer is not None:
            await closer.aclose()  # type: ignore[attr-defined]


# -- sync -----------------------------------------------------------------------------------------
class _SyncConnection:
    def __init__(self, ep: Endpoint, timeout: float) -> None:
        self.reader = hiredis.Reader()
        try:
            if ep.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(ep.path)
            else:
                sock = socket.create_connection((ep.host, ep.port), timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if ep.tls is not None:
                    sock = ep.tls.wrap_socket(sock, server_hostname=ep.host)
        except TimeoutError:
            raise RedisTimeoutError(f"Timeout connecting to Redis ({timeout:g}s)") from None
        except OSError as exc:
            raise RedisConnectionError(f"Error connecting to Redis: {exc}") from None
        sock.settimeout(timeout)
        self.sock = sock
        for command in ep.handshake():
            self.request(hiredis.pack_command(command))

    def request(self, frame: bytes) -> Any:
        try:
            self.sock.sendall(frame)
            reader = self.reader
            while True:
                reply = reader.gets()
                if reply is not False:
                    break
                data = self.sock.recv(_READ_SIZE)
                if not data:
                    raise RedisConnectionError("Connection closed by Redis")
                reader.feed(data)
        except TimeoutError:
            raise RedisTimeoutError("Redis did not answer in time") from None
        except OSError as exc:
            raise RedisConnectionError(f"Redis connection error: {exc}") from None
        if isinstance(reply, hiredis.ReplyError):
            raise _error(reply)
        return reply

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass

    def __del__(self) -> None:
        # A store dropped without close(): release the socket quietly, as redis-py does.
        sock = getattr(self, "sock", None)
        if sock is not None:
            sock.close()


class SyncPipe:
    """A small pool of blocking connections, one request at a time on each (thread-safe).

    A command that fails on a *reused* connection with a connection error is sent once more
    on a fresh one: that is a connection Redis closed while it sat in the pool (a restart),
    and the command never ran. Timeouts are never retried.
    """

    def __init__(self, ep: Endpoint, timeout: float) -> None:
        self.endpoint = ep
        self.timeout = timeout
        self._idle: list[_SyncConnection] = []
        # Re-entrant: a settle may run from a garbage-collection finalizer on this thread.
        self._lock = threading.RLock()

    def call(self, *args: Any) -> Any:
        return self.call_packed(hiredis.pack_command(args))

    def call_packed(self, frame: bytes) -> Any:
        """Send one command already in the wire format (see :func:`bulk`)."""
        with self._lock:
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            try:
                reply = conn.request(frame)
            except RedisConnectionError:
                conn.close()
            except ResponseError:
                self._release(conn)
                raise
            except BaseException:
                conn.close()
                raise
            else:
                self._release(conn)
                return reply
        conn = _SyncConnection(self.endpoint, self.timeout)
        try:
            reply = conn.request(frame)
        except ResponseError:
            self._release(conn)
            raise
        except BaseException:
            conn.close()
            raise
        self._release(conn)
        return reply

    def _release(self, conn: _SyncConnection) -> None:
        with self._lock:
            self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
