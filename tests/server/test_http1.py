"""The server's HTTP/1.1 (``msgflux.server.http1``) against raw sockets, where a client library
would hide the misbehaviour: slow or silent clients are cut off by their bounds while a
well-behaved client is served at once; heads over their limits, ambiguous framing and
malformed lines are refused; keep-alive, pipelining, ``Expect: 100-continue``, chunked bodies
and HTTP/1.0 work as the RFCs say."""

from __future__ import annotations

import asyncio
import socket
import time
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import orjson
import pytest

from msgflux.server.http1 import BadRequest, ClientBounds, Connection, Serving, parse_head
from tests.server.harness import SERVER_KEY, Served, chat_gateway, start
from tests.upstream import Reply, Upstream

BOUND = 0.6
MAX_CONNECTIONS = 40
MAX_BODY = 100_000
CHAT = orjson.dumps({"model": "chat", "messages": [{"role": "user", "content": "hi"}]})


class Env:
    def __init__(self, server: Served, up: Upstream) -> None:
        self.server = server
        self.up = up
        self.sockets: list[socket.socket] = []

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sockets.append(sock)
        return sock

    def request(self, body: bytes = CHAT, *, extra: str = "") -> bytes:
        return (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {SERVER_KEY}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n"
        ).encode() + body

    def timed_good_request(self) -> float:
        """Seconds a new connection takes to get an answer (the server's time alone: no
        client library set up inside the measure)."""
        started = time.perf_counter()
        status, _, body = read_answer(self.connect(), self.request())
        assert status == 200, body
        return time.perf_counter() - started


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with Upstream() as up:
        config = {
            "server": {
                "keys": [{"name": "k", "key": "${CLIENT_KEY}", "models": "*"}],
                "header_timeout": BOUND,
                "body_timeout": BOUND,
                "keep_alive": BOUND,
                "max_connections": MAX_CONNECTIONS,
                "max_body_bytes": MAX_BODY,
            },
            "gateways": {"chat": chat_gateway(up.base_url)},
        }
        server = start(tmp_path_factory.mktemp("http1"), config)
        try:
            yield Env(server, up)
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def fresh(env: Env) -> Iterator[None]:
    env.up.reset()
    yield
    for sock in env.sockets:
        sock.close()
    env.sockets.clear()


def read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until the server closes (fails the test past ``timeout``)."""
    sock.settimeout(timeout)
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
    return out


_UNREAD: weakref.WeakKeyDictionary[socket.socket, bytes] = weakref.WeakKeyDictionary()
"""What a socket received past the answer read last (the start of a pipelined next one)."""


def _recv(sock: socket.socket, data: bytes) -> bytes:
    more = sock.recv(65536)
    if not more:
        raise ConnectionError(f"the server closed the connection after {data[:200]!r}")
    return data + more


def read_answer(sock: socket.socket, request: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """One whole answer with a Content-Length (the connection stays open), after sending
    ``request`` if given."""
    sock.settimeout(5)
    sock.sendall(request)
    data = _UNREAD.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        data = _recv(sock, data)
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        rest = _recv(sock, rest)
    _UNREAD[sock] = rest[length:]
    return int(lines[0].split()[1]), headers, rest[:length]


def status_of(data: bytes) -> int:
    return int(data.split(b" ", 2)[1])


# -- slow and silent clients -----------------------------------------------------------------
def test_headers_sent_slowly_get_408_and_a_close(env: Env) -> None:
    sock = env.connect()
    started = time.monotonic()
    head = env.request()
    try:
        for byte in head[:40]:
            sock.send(bytes([byte]))
            time.sleep(0.05)
    except (BrokenPipeError, ConnectionResetError):
        pass
    data = read_all(sock)
    assert status_of(data) == 408 and b"header_timeout" in data
    assert time.monotonic() - started < BOUND + 1.5


def test_a_connection_that_never_sends_a_byte_is_closed(env: Env) -> None:
    sock = env.connect()
    started = time.monotonic()
    assert read_all(sock) == b""
    assert BOUND - 0.1 <= time.monotonic() - started < BOUND + 1.5


def test_a_body_that_stalls_gets_408_and_a_close(env: Env) -> None:
    sock = env.connect()
    body = b'{"model": "chat", "messages": []}' * 8
    sock.sendall(env.request(body)[: -len(body) + 10])  # the head and 10 bytes of the body
    started = time.monotonic()
    data = read_all(sock)
    assert status_of(data) == 408 and b"body_timeout" in data
    assert time.monotonic() - started < BOUND + 1.5
    assert env.up.count() == 0


def test_an_idle_keep_alive_connection_is_closed_after_its_bound(env: Env) -> None:
    sock = env.connect()
    sock.sendall(env.request())
    status, headers, _ = read_answer(sock)
    assert status == 200 and "connection" not in headers
    started = time.monotonic()
    assert read_all(sock) == b""
    assert time.monotonic() - started < BOUND + 1.5


def test_a_good_client_is_served_at_once_while_slow_ones_hold_connections(env: Env) -> None:
    slow = []
    for i in range(25):
        sock = env.connect()
        if i % 2:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")  # never ends
        else:
            sock.sendall(env.request(b"{" * 100)[:-90])  # a body that stops
        slow.append(sock)
    env.timed_good_request()  # warm
    assert env.timed_good_request() < 0.1
    for sock in slow:  # each cut off by its bound: no descriptor is held for good
        data = read_all(sock, timeout=BOUND + 3)
        assert status_of(data) == 408


def test_past_max_connections_a_new_connection_gets_503_and_a_close(env: Env) -> None:
    held = [env.connect() for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in held:  # each open and served, so all are counted
            sock.sendall(env.request())
            assert read_answer(sock)[0] == 200
        extra = env.connect()
        data = read_all(extra)
        assert status_of(data) == 503 and b"too many open connections" in data
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the closes reach the server
        try:
            env.timed_good_request()
            break
        except (AssertionError, httpx.HTTPError):
            time.sleep(0.05)
    assert env.timed_good_request() < 1


# -- what is refused -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("head", "status"),
    [
        (b"POST /v1/x HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\nContent-Length: +5\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n", 501),
        (b"POST /v1/x HTTP/1.1\r\nX-A: 1\r\n  folded\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\nX-A: 1\nX-B: 2\r\n", 400),
        (b"POST /v1/x HTTP/1.1\r\nBad Name: 1\r\n", 400),
        (b"POST /v1/x HTTP/2.0\r\n", 400),
        (b"POST http://evil/v1/x HTTP/1.1\r\n", 400),
        (b"GET / HTTP/1.1\r\n" + b"X-F: 1\r\n" * 101, 431),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (65 << 10) + b"\r\n", 431),
    ],
)
def test_ambiguous_or_malformed_heads_are_refused_and_closed(
    env: Env, head: bytes, status: int
) -> None:
    sock = env.connect()
    sock.sendall(head + b"\r\n")
    data = read_all(sock)
    assert status_of(data) == status
    assert b"connection: close" in data.lower()


def test_a_body_refused_unread_still_lets_its_client_send_it_and_read_the_413(env: Env) -> None:
    sock = env.connect()
    body = b"x" * (20 * MAX_BODY)
    sock.sendall(env.request(body)[: -len(body)])
    sock.sendall(body)  # what clients do: the whole body, then read (a reset would fail here)
    data = read_all(sock)
    assert status_of(data) == 413 and b"max_body_bytes" in data
    assert b"\r\nconnection: close\r\n" in data.lower()  # no client reuses it


def test_requests_cut_by_a_bound_leave_nothing_that_holds_a_shutdown(
    env: Env, tmp_path: Path
) -> None:
    config = {
        "server": {
            "keys": [{"name": "k", "key": "${CLIENT_KEY}", "models": "*"}],
            "body_timeout": BOUND,
            "max_body_bytes": MAX_BODY,
        },
        "gateways": {"chat": chat_gateway(env.up.base_url)},
    }
    server = start(tmp_path, config)
    try:
        stalled, refused = (
            socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)
        )
        env.sockets += [stalled, refused]  # closed by the fixture
        stalled.sendall(env.request(b"{" * 100)[:-90])  # its body stops: 408
        refused.sendall(env.request(b"x" * (2 * MAX_BODY)))  # 413 unread
        assert status_of(read_all(stalled)) == 408 and status_of(read_all(refused)) == 413
        started = time.monotonic()
        assert server.stop(timeout=10) == 0
        assert time.monotonic() - started < 3  # not the 30 s shutdown grace
    finally:
        server.stop()


def test_a_malformed_chunk_is_a_400(env: Env) -> None:
    sock = env.connect()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {SERVER_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    sock.sendall(head.encode() + b"zz\r\nabc\r\n")
    assert status_of(read_all(sock)) == 400


# -- what works --------------------------------------------------------------------------------
def test_two_pipelined_requests_are_answered_in_order_on_one_connection(env: Env) -> None:
    sock = env.connect()
    sock.sendall(env.request() + env.request())
    first = read_answer(sock)
    second = read_answer(sock)
    assert first[0] == second[0] == 200
    assert orjson.loads(first[2])["model"] == orjson.loads(second[2])["model"] == "chat"
    assert env.up.count() >= 2


def test_expect_100_continue_is_answered_when_the_body_is_wanted(env: Env) -> None:
    sock = env.connect()
    request = env.request(extra="Expect: 100-continue\r\n")
    head, body = request[: -len(CHAT)], CHAT
    sock.sendall(head)
    sock.settimeout(5)
    assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(body)
    assert read_answer(sock)[0] == 200


def test_a_refused_request_with_expect_never_gets_100_and_closes(env: Env) -> None:
    sock = env.connect()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-key-0\r\n"
        "Content-Length: 1000000\r\nExpect: 100-continue\r\n\r\n"
    )
    sock.sendall(head.encode())
    data = read_all(sock)
    assert status_of(data) == 401 and b"100 Continue" not in data


def test_a_chunked_request_body_is_read(env: Env) -> None:
    sock = env.connect()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {SERVER_KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunks = b"".join(b"%x;ext=1\r\n%b\r\n" % (len(p), p) for p in (CHAT[:7], CHAT[7:]))
    sock.sendall(head.encode() + chunks + b"0\r\nX-Trailer: 1\r\n\r\n")
    assert read_answer(sock)[0] == 200


def test_http_1_0_gets_its_answer_and_a_close(env: Env) -> None:
    sock = env.connect()
    sock.sendall(env.request().replace(b"HTTP/1.1", b"HTTP/1.0", 1))
    data = read_all(sock)
    assert status_of(data) == 200 and b"connection: close" in data.lower()


def test_a_stream_is_chunked_and_ends_with_the_last_chunk(env: Env) -> None:
    env.up.script(Reply(chunks=["a", "b", "c"]))
    body = orjson.dumps(
        {"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": True}
    )
    sock = env.connect()
    sock.sendall(env.request(body, extra="Connection: close\r\n"))
    data = read_all(sock)
    head, _, rest = data.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower()
    assert rest.endswith(b"0\r\n\r\n") and b"[DONE]" in rest


# -- the protocol's parts ----------------------------------------------------------------------
def test_parse_head_lowercases_names_and_keeps_values() -> None:
    method, target, modern, headers = parse_head(
        b"POST /v1/a%20b?x=1 HTTP/1.1\r\nHost: h\r\nX-Thing:  two words \r\nX-Empty:"
    )
    assert (method, target, modern) == ("POST", b"/v1/a%20b?x=1", True)
    assert headers == [(b"host", b"h"), (b"x-thing", b"two words"), (b"x-empty", b"")]
    with pytest.raises(BadRequest):
        parse_head(b"POST /v1 HTTP/1.1\r\nNo colon here")


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_stream_events_sent_in_one_pass_of_the_loop_leave_in_one_write() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for piece in (b"a", b"b", b"c"):  # ready together: no await in between but send's
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b"d", "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    loop = asyncio.get_running_loop()
    conn = Connection(Serving(app, loop, ClientBounds()))
    transport = _Transport()
    conn.connection_made(transport)
    conn.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert conn.task is not None
    await conn.task
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    assert transport.writes == [
        head + b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n",  # the first pass: one write
        b"1\r\nd\r\n0\r\n\r\n",  # the last event with the end
    ]
    conn.connection_lost(None)
